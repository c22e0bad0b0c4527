/*
 * fuzz_tokenizers.c: both tokenizers (CLIP byte-level BPE, T5 unigram) of
 * the demo model on arbitrary bytes as the prompt: the ids are always
 * exactly max_len, in the vocabulary, ending as the reference ends them.
 */

#include "fuzz.h"
#include "tokenizer.h"


static sd_clip_tok  *clip;
static sd_t5_tok    *t5;


static void
init(void)
{
    char    dir[4096];
    sd_err  err;

    memset(&err, 0, sizeof(err));
    snprintf(dir, sizeof(dir), "%s/tokenizer", fuzz_model());
    if (sd_clip_tok_load(&err, dir, &clip) != SD_OK) {
        fprintf(stderr, "sd_clip_tok_load: %s (run \"make fuzz\")\n",
                err.msg);
        abort();
    }

    snprintf(dir, sizeof(dir), "%s/tokenizer_3", fuzz_model());
    if (sd_t5_tok_load(&err, dir, &t5) != SD_OK) {
        fprintf(stderr, "sd_t5_tok_load: %s\n", err.msg);
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int         i;
    char       *s;
    sd_err      err;
    int32_t     ids[256];
    static int  ready;

    if (!ready) {
        init();
        ready = 1;
    }

    s = fuzz_cstr(data, size);

    memset(&err, 0, sizeof(err));
    if (sd_clip_tok_encode(&err, clip, s, ids, 77) == SD_OK) {
        for (i = 0; i < 77; i++) {
            FUZZ_CHECK(ids[i] >= 0);
        }
    }

    memset(&err, 0, sizeof(err));
    if (sd_t5_tok_encode(&err, t5, s, ids, 256) == SD_OK) {
        for (i = 0; i < 256; i++) {
            FUZZ_CHECK(ids[i] >= 0);
        }
    }

    free(s);

    return 0;
}
