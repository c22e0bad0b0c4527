/*
 * sd_status.c: names of the public status codes.
 */

#include "sd.h"


const char *
sd_status_str(sd_status s)
{
    switch (s) {
    case SD_OK:              return "ok";
    case SD_ERR_INVALID:     return "invalid argument";
    case SD_ERR_IO:          return "i/o error";
    case SD_ERR_FORMAT:      return "malformed file";
    case SD_ERR_NOMEM:       return "out of memory";
    case SD_ERR_UNSUPPORTED: return "unsupported";
    case SD_ERR_CANCELLED:   return "cancelled";
    case SD_ERR_BACKEND:     return "backend failure";
    case SD_ERR_INTERNAL:    return "internal error";
    case SD_ERR_DEVICE:      return "device failure";
    }
    return "unknown status";
}
