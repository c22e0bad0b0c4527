/*
 * fuzz_safetensors.c: the safetensors reader on a file of arbitrary bytes
 * (mmap'ed as a model is), or, when the input starts with '{', on a
 * *.safetensors.index.json that names shards in its folder (one of them a
 * valid file written at start). Every tensor it exposes is read whole, so
 * that the header checks (offsets, shapes, sizes) are put to the test.
 */

#include "fuzz.h"
#include "safetensors.h"


static char  single[512], index_path[512];


static void
init(void)
{
    char       shard[512];
    sd_err     err;
    float      v[6] = { 1, 2, 3, 4, 5, 6 };
    sd_st_out  t = { "a.weight", SD_DT_F32, 2, { 2, 3 }, v };

    snprintf(single, sizeof(single), "%s/x.safetensors", fuzz_tmpdir());
    snprintf(index_path, sizeof(index_path),
             "%s/model.safetensors.index.json", fuzz_tmpdir());
    snprintf(shard, sizeof(shard), "%s/model-00001-of-00002.safetensors",
             fuzz_tmpdir());

    memset(&err, 0, sizeof(err));
    if (sd_st_write(&err, shard, &t, 1) != SD_OK) {
        fprintf(stderr, "sd_st_write: %s\n", err.msg);
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    float               *buf;
    size_t               i, n;
    sd_st               *st;
    sd_err               err;
    const char          *path;
    const sd_st_tensor  *t;
    static int           ready;

    if (!ready) {
        init();
        ready = 1;
    }

    path = (size && data[0] == '{') ? index_path : single;
    fuzz_write(path, data, size);

    memset(&err, 0, sizeof(err));
    if (sd_st_open(&err, path, &st) != SD_OK) {
        FUZZ_CHECK(err.msg[0] != '\0');
        return 0;
    }

    n = sd_st_count(st);
    for (i = 0; i < n; i++) {
        t = sd_st_at(st, i);
        FUZZ_CHECK(t != NULL && t->name != NULL);
        FUZZ_CHECK(sd_st_find(st, t->name) != NULL);
        FUZZ_CHECK(t->nbytes == (size_t) t->numel * sd_dtype_size(t->dtype));

        if (t->numel > (1 << 20)) {
            continue;
        }

        buf = malloc((size_t) (t->numel ? t->numel : 1) * sizeof(float));
        if (buf == NULL) {
            abort();
        }
        memset(&err, 0, sizeof(err));
        (void) sd_st_read_f32(&err, t, buf);
        free(buf);
    }

    (void) sd_st_metadata(st, "format");
    sd_st_close(st);

    return 0;
}
