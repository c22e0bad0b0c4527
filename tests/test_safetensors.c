/*
 * test_safetensors.c: the safetensors reader and writer against malformed
 * files written here into a temporary folder, sharded indexes, a round trip
 * through sd_st_write, dtype conversion spot checks, and the real fixtures.
 *
 * Invariant: every malformed case must fail with a status and a message that
 * names the file; nothing may crash (run under ASan/UBSan and valgrind).
 */

#include <stdint.h>
#include <unistd.h>
#include <sys/stat.h>

#include "t.h"
#include "safetensors.h"


static char  tdir[256];


static void
t_path(char *buf, size_t len, const char *name)
{
    if ((size_t) snprintf(buf, len, "%.200s/%.50s", tdir, name) >= len) {
        buf[0] = '\0';
    }
}


/* Write 8-byte length hlen (or strlen(json)), the JSON, then ndata bytes. */
static void
t_write_raw(const char *name, const char *json, uint64_t hlen, size_t ndata)
{
    char      path[512];
    FILE     *f;
    size_t    i;
    unsigned char  b[8];

    t_path(path, sizeof(path), name);
    f = fopen(path, "wb");
    if (f == NULL) {
        return;
    }
    if (hlen == (uint64_t) -1) {
        hlen = strlen(json);
    }
    for (i = 0; i < 8; i++) {
        b[i] = (unsigned char) (hlen >> (8 * i));
    }
    fwrite(b, 1, 8, f);
    fwrite(json, 1, strlen(json), f);
    for (i = 0; i < ndata; i++) {
        fputc((int) (i & 0xff), f);
    }
    fclose(f);
}


static void
t_write_text(const char *name, const char *text)
{
    char   path[512];
    FILE  *f;

    t_path(path, sizeof(path), name);
    f = fopen(path, "wb");
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}


/* Opening name must fail with want (0 = any) and mention name. */
static void
t_expect_fail(const char *name, sd_status want, const char *what)
{
    char        path[512];
    sd_st      *st;
    sd_err      err;
    sd_status   rc;

    sd_err_clear(&err);
    t_path(path, sizeof(path), name);
    st = NULL;
    rc = sd_st_open(&err, path, &st);

    T_CHECK(rc != SD_OK, "%s: open succeeded", what);
    T_CHECK(st == NULL, "%s: set returned on failure", what);
    T_CHECK(want == SD_OK || rc == want, "%s: status %d, want %d (%s)", what,
            (int) rc, (int) want, err.msg);
    T_CHECK(strstr(err.msg, name) != NULL, "%s: message lacks file name: %s",
            what, err.msg);
    sd_st_close(st);
}


static void
test_malformed(void)
{
    char  big[256];

    /* shorter than the 8-byte length */
    t_write_text("short.safetensors", "abcd");
    t_expect_fail("short.safetensors", SD_ERR_FORMAT, "4-byte file");

    t_write_text("empty.safetensors", "");
    t_expect_fail("empty.safetensors", SD_ERR_FORMAT, "empty file");

    /* header length says more than the file holds */
    t_write_raw("trunc_hdr.safetensors", "{}", 100, 0);
    t_expect_fail("trunc_hdr.safetensors", SD_ERR_FORMAT, "truncated header");

    /* absurd header length */
    t_write_raw("huge_hdr.safetensors", "{}", (uint64_t) 1 << 40, 0);
    t_expect_fail("huge_hdr.safetensors", SD_ERR_FORMAT, "oversized header");

    t_write_raw("maxhdr.safetensors", "{}", UINT64_MAX - 1, 0);
    t_expect_fail("maxhdr.safetensors", SD_ERR_FORMAT, "2^64-2 header");

    /* not JSON, not an object, trailing garbage */
    t_write_raw("notjson.safetensors", "this is not json", (uint64_t) -1, 0);
    t_expect_fail("notjson.safetensors", SD_ERR_FORMAT, "not JSON");

    t_write_raw("array.safetensors", "[1,2,3]", (uint64_t) -1, 0);
    t_expect_fail("array.safetensors", SD_ERR_FORMAT, "JSON array header");

    t_write_raw("garbage.safetensors", "{} xx", (uint64_t) -1, 0);
    t_expect_fail("garbage.safetensors", SD_ERR_FORMAT, "trailing garbage");

    t_write_raw("unterminated.safetensors", "{\"a\": {\"dtype\": \"F3",
                (uint64_t) -1, 0);
    t_expect_fail("unterminated.safetensors", SD_ERR_FORMAT,
                  "unterminated JSON");

    /* data section shorter than the offsets say */
    t_write_raw("trunc_data.safetensors",
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],"
                "\"data_offsets\":[0,16]}}", (uint64_t) -1, 8);
    t_expect_fail("trunc_data.safetensors", SD_ERR_FORMAT, "truncated data");

    /* offsets out of bounds (huge) and begin > end */
    t_write_raw("oob.safetensors",
                "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],"
                "\"data_offsets\":[18446744073709551612,"
                "18446744073709551616]}}", (uint64_t) -1, 8);
    t_expect_fail("oob.safetensors", SD_ERR_FORMAT, "offsets out of bounds");

    t_write_raw("backwards.safetensors",
                "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],"
                "\"data_offsets\":[4,0]}}", (uint64_t) -1, 8);
    t_expect_fail("backwards.safetensors", SD_ERR_FORMAT, "begin > end");

    t_write_raw("negoff.safetensors",
                "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],"
                "\"data_offsets\":[-2,0]}}", (uint64_t) -1, 8);
    t_expect_fail("negoff.safetensors", SD_ERR_FORMAT, "negative offset");

    t_write_raw("fracoff.safetensors",
                "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],"
                "\"data_offsets\":[0.5,2.5]}}", (uint64_t) -1, 8);
    t_expect_fail("fracoff.safetensors", SD_ERR_FORMAT, "fractional offset");

    /* overlapping tensors */
    t_write_raw("overlap.safetensors",
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                "\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
                "\"data_offsets\":[4,12]}}", (uint64_t) -1, 16);
    t_expect_fail("overlap.safetensors", SD_ERR_FORMAT, "overlap");

    /* size / shape mismatch */
    t_write_raw("mismatch.safetensors",
                "{\"a\":{\"dtype\":\"F16\",\"shape\":[3],"
                "\"data_offsets\":[0,8]}}", (uint64_t) -1, 8);
    t_expect_fail("mismatch.safetensors", SD_ERR_FORMAT, "size mismatch");

    /* shape overflow: numel * size wraps */
    t_write_raw("ovf.safetensors",
                "{\"a\":{\"dtype\":\"I64\",\"shape\":[4294967296,4294967296,"
                "16],\"data_offsets\":[0,0]}}", (uint64_t) -1, 8);
    t_expect_fail("ovf.safetensors", SD_ERR_FORMAT, "numel overflow");

    t_write_raw("negshape.safetensors",
                "{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],"
                "\"data_offsets\":[0,0]}}", (uint64_t) -1, 8);
    t_expect_fail("negshape.safetensors", SD_ERR_FORMAT, "negative dim");

    t_write_raw("dims.safetensors",
                "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                "\"data_offsets\":[0,1]}}", (uint64_t) -1, 8);
    t_expect_fail("dims.safetensors", SD_ERR_FORMAT, "too many dims");

    t_write_raw("noshape.safetensors",
                "{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}",
                (uint64_t) -1, 8);
    t_expect_fail("noshape.safetensors", SD_ERR_FORMAT, "missing shape");

    t_write_raw("badentry.safetensors", "{\"a\":3}", (uint64_t) -1, 8);
    t_expect_fail("badentry.safetensors", SD_ERR_FORMAT, "entry not object");

    t_write_raw("dup.safetensors",
                "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],"
                "\"data_offsets\":[0,1]},"
                "\"a\":{\"dtype\":\"U8\",\"shape\":[1],"
                "\"data_offsets\":[1,2]}}", (uint64_t) -1, 8);
    t_expect_fail("dup.safetensors", SD_ERR_FORMAT, "duplicate name");

    t_write_raw("badmeta.safetensors",
                "{\"__metadata__\":{\"k\":1}}", (uint64_t) -1, 0);
    t_expect_fail("badmeta.safetensors", SD_ERR_FORMAT, "non-string meta");

    /* unknown dtype: unsupported, naming dtype and tensor */
    {
        char        path[512];
        sd_st      *st;
        sd_err      err;
        sd_status   rc;

        t_write_raw("f64.safetensors",
                    "{\"weird\":{\"dtype\":\"F64\",\"shape\":[1],"
                    "\"data_offsets\":[0,8]}}", (uint64_t) -1, 8);
        t_expect_fail("f64.safetensors", SD_ERR_UNSUPPORTED, "unknown dtype");

        sd_err_clear(&err);
        t_path(path, sizeof(path), "f64.safetensors");
        rc = sd_st_open(&err, path, &st);
        T_CHECK(rc == SD_ERR_UNSUPPORTED && strstr(err.msg, "F64")
                && strstr(err.msg, "weird"),
                "unknown dtype message: %s", err.msg);
    }

    /* missing file */
    t_expect_fail("does-not-exist.safetensors", SD_ERR_IO, "missing file");

    /* a random-bytes fuzz of headers must never crash */
    {
        size_t       i, j;
        char         name[64];
        unsigned     seed = 12345;
        sd_st       *st;
        sd_err       err;
        const char  *base = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,1],"
                            "\"data_offsets\":[0,8]},\"__metadata__\":"
                            "{\"x\":\"y\"}}";

        for (i = 0; i < 300; i++) {
            snprintf(big, sizeof(big), "%s", base);
            for (j = 0; j < 3; j++) {
                seed = seed * 1103515245u + 12345u;
                big[(seed >> 8) % strlen(base)] = (char) (seed >> 20);
            }
            big[strlen(base)] = '\0';
            snprintf(name, sizeof(name), "fuzz.safetensors");
            t_write_raw(name, big, strlen(big), 8);
            t_path(big, sizeof(big), name);
            sd_err_clear(&err);
            st = NULL;
            if (sd_st_open(&err, big, &st) == SD_OK) {
                sd_st_close(st);
            } else {
                T_CHECK(strstr(err.msg, name) != NULL,
                        "fuzz message lacks name: %s", err.msg);
            }
        }
    }
}


static void
test_valid_small(void)
{
    char                 path[512];
    float                v[2];
    sd_st               *st;
    sd_err               err;
    sd_status            rc;
    const sd_st_tensor  *t;
    const int64_t        want[2] = { 2, 1 }, bad[2] = { 1, 2 };

    /* header padded with spaces, zero-sized tensor, metadata */
    t_write_raw("ok.safetensors",
                "{\"__metadata__\":{\"format\":\"pt\",\"who\":\"me\"},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[2,1],"
                "\"data_offsets\":[8,10]},"
                "\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],"
                "\"data_offsets\":[8,8]},"
                "\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                "\"data_offsets\":[0,8]}}      ", (uint64_t) -1, 10);

    sd_err_clear(&err);
    t_path(path, sizeof(path), "ok.safetensors");
    rc = sd_st_open(&err, path, &st);
    T_CHECK(rc == SD_OK, "open ok.safetensors: %s", err.msg);
    if (rc != SD_OK) {
        return;
    }

    T_CHECK(sd_st_count(st) == 3, "count %zu", sd_st_count(st));
    T_CHECK(sd_st_at(st, 3) == NULL, "at out of range");
    T_CHECK(sd_st_metadata(st, "format")
            && strcmp(sd_st_metadata(st, "format"), "pt") == 0,
            "metadata format");
    T_CHECK(sd_st_metadata(st, "nope") == NULL, "metadata missing key");
    T_CHECK(sd_st_find(st, "c") == NULL, "find missing");

    t = sd_st_find(st, "b");
    T_CHECK(t && t->dtype == SD_DT_U8 && t->ndim == 2 && t->numel == 2
            && t->nbytes == 2 && strcmp(t->file, path) == 0, "tensor b");
    if (t) {
        T_CHECK(sd_st_read_f32(&err, t, v) == SD_OK && v[0] == 8.0f
                && v[1] == 9.0f, "b values %g %g", v[0], v[1]);
    }

    t = sd_st_find(st, "z");
    T_CHECK(t && t->numel == 0 && t->nbytes == 0, "zero-sized tensor");

    rc = sd_st_get(&err, st, "b", 2, want, &t);
    T_CHECK(rc == SD_OK && t != NULL, "get b: %s", err.msg);

    rc = sd_st_get(&err, st, "b", 0, NULL, &t);
    T_CHECK(rc == SD_OK && t != NULL, "get b without shape: %s", err.msg);

    sd_err_clear(&err);
    rc = sd_st_get(&err, st, "b", 2, bad, &t);
    T_CHECK(rc != SD_OK && t == NULL && strstr(err.msg, "[2, 1]")
            && strstr(err.msg, "[1, 2]") && strstr(err.msg, "\"b\""),
            "get shape mismatch: %s", err.msg);

    sd_err_clear(&err);
    rc = sd_st_get(&err, st, "b", 1, want, &t);
    T_CHECK(rc != SD_OK && strstr(err.msg, "[2]"), "get ndim mismatch: %s",
            err.msg);

    sd_err_clear(&err);
    rc = sd_st_get(&err, st, "nope", 0, NULL, &t);
    T_CHECK(rc != SD_OK && strstr(err.msg, "\"nope\" not found")
            && strstr(err.msg, "ok.safetensors"), "get missing: %s",
            err.msg);

    sd_st_close(st);
    sd_st_close(NULL);
}


static void
test_shards(void)
{
    char                 path[512];
    float                v[4];
    sd_st               *st;
    sd_err               err;
    sd_status            rc;
    const sd_st_tensor  *t;

    t_write_raw("shard-1.safetensors",
                "{\"__metadata__\":{\"format\":\"pt\"},"
                "\"x.weight\":{\"dtype\":\"U8\",\"shape\":[2],"
                "\"data_offsets\":[0,2]}}", (uint64_t) -1, 2);
    t_write_raw("shard-2.safetensors",
                "{\"y.weight\":{\"dtype\":\"U8\",\"shape\":[2,2],"
                "\"data_offsets\":[0,4]},"
                "\"y.bias\":{\"dtype\":\"U8\",\"shape\":[1],"
                "\"data_offsets\":[4,5]}}", (uint64_t) -1, 5);
    t_write_text("model.safetensors.index.json",
                 "{\"metadata\":{\"total_size\":7},\"weight_map\":{"
                 "\"x.weight\":\"shard-1.safetensors\","
                 "\"y.weight\":\"shard-2.safetensors\","
                 "\"y.bias\":\"shard-2.safetensors\"}}");

    sd_err_clear(&err);
    t_path(path, sizeof(path), "model.safetensors.index.json");
    rc = sd_st_open(&err, path, &st);
    T_CHECK(rc == SD_OK, "open index: %s", err.msg);
    if (rc == SD_OK) {
        T_CHECK(sd_st_count(st) == 3, "shard count %zu", sd_st_count(st));
        t = sd_st_find(st, "y.weight");
        T_CHECK(t && strstr(t->file, "shard-2.safetensors") && t->ndim == 2,
                "y.weight in shard 2");
        if (t) {
            sd_st_read_f32(&err, t, v);
            T_CHECK(v[0] == 0 && v[3] == 3, "y.weight data");
        }
        t = sd_st_find(st, "x.weight");
        T_CHECK(t && strstr(t->file, "shard-1.safetensors"),
                "x.weight in shard 1");
        T_CHECK(sd_st_metadata(st, "format") != NULL, "shard metadata");
        sd_st_close(st);
    }

    /* index naming a tensor that its shard lacks */
    t_write_text("bad1.safetensors.index.json",
                 "{\"weight_map\":{"
                 "\"x.weight\":\"shard-1.safetensors\","
                 "\"q.weight\":\"shard-2.safetensors\"}}");
    t_expect_fail("bad1.safetensors.index.json", SD_ERR_FORMAT,
                  "tensor missing from shard");

    /* tensor present but in another shard than named */
    t_write_text("bad2.safetensors.index.json",
                 "{\"weight_map\":{"
                 "\"x.weight\":\"shard-2.safetensors\","
                 "\"y.weight\":\"shard-1.safetensors\"}}");
    t_expect_fail("bad2.safetensors.index.json", SD_ERR_FORMAT,
                  "tensor in wrong shard");

    /* a missing shard file */
    t_write_text("bad3.safetensors.index.json",
                 "{\"weight_map\":{"
                 "\"x.weight\":\"shard-1.safetensors\","
                 "\"y.weight\":\"shard-9.safetensors\"}}");
    t_expect_fail("bad3.safetensors.index.json", SD_ERR_IO,
                  "missing shard file");
    sd_err_clear(&err);
    t_path(path, sizeof(path), "bad3.safetensors.index.json");
    rc = sd_st_open(&err, path, &st);
    T_CHECK(rc == SD_ERR_IO && strstr(err.msg, "shard-9.safetensors"),
            "missing shard named: %s", err.msg);

    /* the same tensor in two shards */
    t_write_raw("shard-3.safetensors",
                "{\"x.weight\":{\"dtype\":\"U8\",\"shape\":[2],"
                "\"data_offsets\":[0,2]}}", (uint64_t) -1, 2);
    t_write_text("bad4.safetensors.index.json",
                 "{\"weight_map\":{"
                 "\"x.weight\":\"shard-1.safetensors\","
                 "\"z\":\"shard-3.safetensors\"}}");
    t_expect_fail("bad4.safetensors.index.json", SD_ERR_FORMAT,
                  "duplicate across shards");

    /* not JSON, no weight_map, absolute shard path */
    t_write_text("bad5.safetensors.index.json", "{nope");
    t_expect_fail("bad5.safetensors.index.json", SD_ERR_FORMAT,
                  "index not JSON");
    t_write_text("bad6.safetensors.index.json", "{\"metadata\":{}}");
    t_expect_fail("bad6.safetensors.index.json", SD_ERR_FORMAT,
                  "index without weight_map");
    t_write_text("bad7.safetensors.index.json",
                 "{\"weight_map\":{\"x\":\"/etc/passwd\"}}");
    t_expect_fail("bad7.safetensors.index.json", SD_ERR_FORMAT,
                  "absolute shard path");
}


static void
test_open_dir(void)
{
    char        sub[512];
    sd_st      *st;
    sd_err      err;
    sd_status   rc;

    /* missing folder */
    sd_err_clear(&err);
    t_path(sub, sizeof(sub), "no-such-dir");
    rc = sd_st_open_dir(&err, sub, &st);
    T_CHECK(rc == SD_ERR_IO && st == NULL && strstr(err.msg, "no-such-dir"),
            "missing dir: %s", err.msg);

    /* empty folder */
    t_path(sub, sizeof(sub), "emptydir");
    mkdir(sub, 0700);
    sd_err_clear(&err);
    rc = sd_st_open_dir(&err, sub, &st);
    T_CHECK(rc == SD_ERR_IO && strstr(err.msg, "emptydir"), "empty dir: %s",
            err.msg);

    /* one file with an arbitrary name */
    t_path(sub, sizeof(sub), "d1");
    mkdir(sub, 0700);
    t_write_raw("d1/weights.safetensors", "{}", (uint64_t) -1, 0);
    sd_err_clear(&err);
    rc = sd_st_open_dir(&err, sub, &st);
    T_CHECK(rc == SD_OK && sd_st_count(st) == 0, "single file dir: %s",
            err.msg);
    sd_st_close(st);

    /* two files, one preferred */
    t_write_raw("d1/model.safetensors",
                "{\"m\":{\"dtype\":\"U8\",\"shape\":[],"
                "\"data_offsets\":[0,1]}}", (uint64_t) -1, 1);
    sd_err_clear(&err);
    rc = sd_st_open_dir(&err, sub, &st);
    T_CHECK(rc == SD_OK && sd_st_find(st, "m") != NULL, "prefer model: %s",
            err.msg);
    sd_st_close(st);

    /* two files, none preferred -> error */
    t_path(sub, sizeof(sub), "d2");
    mkdir(sub, 0700);
    t_write_raw("d2/a.safetensors", "{}", (uint64_t) -1, 0);
    t_write_raw("d2/b.safetensors", "{}", (uint64_t) -1, 0);
    sd_err_clear(&err);
    rc = sd_st_open_dir(&err, sub, &st);
    T_CHECK(rc != SD_OK && st == NULL && strstr(err.msg, "d2"),
            "ambiguous dir: %s", err.msg);

    /* an index wins over single files */
    t_write_text("d2/x.safetensors.index.json",
                 "{\"weight_map\":{\"k\":\"a.safetensors\"}}");
    sd_err_clear(&err);
    rc = sd_st_open_dir(&err, sub, &st);
    T_CHECK(rc != SD_OK && strstr(err.msg, "x.safetensors.index.json"),
            "index dir used: %s", err.msg);
    sd_st_close(st);
}


static void
test_roundtrip(void)
{
    char                 path[512];
    size_t               i;
    float                f32[6] = { 1.5f, -2.25f, 0.0f, 3e-8f, 65504.0f,
                                    -1e30f };
    float                back[6];
    uint16_t             f16[3] = { 0x3c00, 0xc000, 0x0001 };
    uint16_t             bf16[2] = { 0x3f80, 0xc2f7 };
    uint8_t              e4[3] = { 0x38, 0x7e, 0x01 };
    uint8_t              e5[3] = { 0x3c, 0x7b, 0x7c };
    int32_t              i32[3] = { -7, 0, 49407 };
    int64_t              i64[2] = { -3, 1099511627776LL };
    uint8_t              u8[4] = { 0, 1, 128, 255 };
    sd_st               *st;
    sd_err               err;
    sd_status            rc;
    sd_st_out            o[9];
    const sd_st_tensor  *t;

    memset(o, 0, sizeof(o));
    o[0] = (sd_st_out) { "f32", SD_DT_F32, 2, { 2, 3 }, f32 };
    o[1] = (sd_st_out) { "f16", SD_DT_F16, 1, { 3 }, f16 };
    o[2] = (sd_st_out) { "bf16", SD_DT_BF16, 2, { 1, 2 }, bf16 };
    o[3] = (sd_st_out) { "e4m3", SD_DT_F8_E4M3, 1, { 3 }, e4 };
    o[4] = (sd_st_out) { "e5m2", SD_DT_F8_E5M2, 1, { 3 }, e5 };
    o[5] = (sd_st_out) { "i32", SD_DT_I32, 3, { 1, 1, 3 }, i32 };
    o[6] = (sd_st_out) { "i64", SD_DT_I64, 1, { 2 }, i64 };
    o[7] = (sd_st_out) { "u8 \"quoted\"", SD_DT_U8, 2, { 2, 2 }, u8 };
    o[8] = (sd_st_out) { "scalar", SD_DT_F32, 0, { 0 }, f32 };

    t_path(path, sizeof(path), "rt.safetensors");
    sd_err_clear(&err);
    rc = sd_st_write(&err, path, o, 9);
    T_CHECK(rc == SD_OK, "write: %s", err.msg);

    rc = sd_st_open(&err, path, &st);
    T_CHECK(rc == SD_OK, "reopen: %s", err.msg);
    if (rc != SD_OK) {
        return;
    }

    T_CHECK(sd_st_count(st) == 9, "rt count %zu", sd_st_count(st));
    for (i = 0; i < 9; i++) {
        t = sd_st_find(st, o[i].name);
        T_CHECK(t != NULL && t->dtype == o[i].dtype && t->ndim == o[i].ndim
                && memcmp(t->shape, o[i].shape,
                          (size_t) o[i].ndim * sizeof(int64_t)) == 0
                && memcmp(t->data, o[i].data, t->nbytes) == 0,
                "rt tensor %s", o[i].name);
    }

    /* order preserved */
    T_CHECK(strcmp(sd_st_at(st, 0)->name, "f32") == 0
            && strcmp(sd_st_at(st, 8)->name, "scalar") == 0, "rt order");

    t = sd_st_find(st, "scalar");
    T_CHECK(t && t->numel == 1 && t->nbytes == 4, "scalar numel");

    t = sd_st_find(st, "f32");
    sd_st_read_f32(&err, t, back);
    T_CHECK(memcmp(back, f32, sizeof(f32)) == 0, "f32 read");

    t = sd_st_find(st, "f16");
    sd_st_read_f32(&err, t, back);
    T_CHECK(back[0] == 1.0f && back[1] == -2.0f && back[2] == 0x1p-24f,
            "f16 read %g %g %g", back[0], back[1], back[2]);

    t = sd_st_find(st, "bf16");
    sd_st_read_f32(&err, t, back);
    T_CHECK(back[0] == 1.0f && back[1] == -123.5f, "bf16 read %g %g",
            back[0], back[1]);

    t = sd_st_find(st, "e4m3");
    sd_st_read_f32(&err, t, back);
    T_CHECK(back[0] == 1.0f && back[1] == 448.0f && back[2] == 0x1p-9f,
            "e4m3 read %g %g %g", back[0], back[1], back[2]);

    t = sd_st_find(st, "e5m2");
    sd_st_read_f32(&err, t, back);
    T_CHECK(back[0] == 1.0f && back[1] == 57344.0f && isinf(back[2]),
            "e5m2 read %g %g %g", back[0], back[1], back[2]);

    t = sd_st_find(st, "i32");
    sd_st_read_f32(&err, t, back);
    T_CHECK(back[0] == -7.0f && back[2] == 49407.0f, "i32 read");

    t = sd_st_find(st, "i64");
    sd_st_read_f32(&err, t, back);
    T_CHECK(back[0] == -3.0f && back[1] == 1099511627776.0f, "i64 read");

    t = sd_st_find(st, "u8 \"quoted\"");
    sd_st_read_f32(&err, t, back);
    T_CHECK(back[2] == 128.0f && back[3] == 255.0f, "u8 read");

    sd_st_close(st);

    /* the header must be padded to a multiple of 8 */
    {
        FILE          *f;
        unsigned char  b[8];
        uint64_t       h = 0;

        f = fopen(path, "rb");
        if (f != NULL && fread(b, 1, 8, f) == 8) {
            for (i = 0; i < 8; i++) {
                h |= (uint64_t) b[i] << (8 * i);
            }
        }
        if (f) {
            fclose(f);
        }
        T_CHECK(h > 0 && h % 8 == 0, "header length %llu",
                (unsigned long long) h);
    }

    /* empty file, and bad input */
    t_path(path, sizeof(path), "rt0.safetensors");
    sd_err_clear(&err);
    T_CHECK(sd_st_write(&err, path, NULL, 0) == SD_OK, "write empty: %s",
            err.msg);
    T_CHECK(sd_st_open(&err, path, &st) == SD_OK && sd_st_count(st) == 0,
            "open empty: %s", err.msg);
    sd_st_close(st);

    o[1].name = "f32";
    sd_err_clear(&err);
    T_CHECK(sd_st_write(&err, path, o, 2) != SD_OK, "write duplicate");
    o[1].name = "f16";
    o[1].shape[0] = -1;
    sd_err_clear(&err);
    T_CHECK(sd_st_write(&err, path, o, 2) != SD_OK, "write negative dim");

    t_path(path, sizeof(path), "no-such-dir/x.safetensors");
    sd_err_clear(&err);
    T_CHECK(sd_st_write(&err, path, o, 1) == SD_ERR_IO
            && strstr(err.msg, "no-such-dir"), "write to missing dir: %s",
            err.msg);
}


static void
test_conversions(void)
{
    float  f;

    /* bf16 */
    T_CHECK(sd_bf16_to_f32(0x3f80) == 1.0f, "bf16 1");
    T_CHECK(sd_bf16_to_f32(0xc000) == -2.0f, "bf16 -2");
    T_CHECK(sd_bf16_to_f32(0x7f7f) == 0x1.fep127f, "bf16 max");
    T_CHECK(sd_bf16_to_f32(0x0001) == 0x1p-133f, "bf16 min subnormal");
    T_CHECK(isinf(sd_bf16_to_f32(0xff80)) && sd_bf16_to_f32(0xff80) < 0,
            "bf16 -inf");
    T_CHECK(isnan(sd_bf16_to_f32(0x7fc0)), "bf16 nan");

    /* f16 */
    T_CHECK(sd_f16_to_f32(0x3c00) == 1.0f, "f16 1");
    T_CHECK(sd_f16_to_f32(0x3555) == 0x1.554p-2f, "f16 0.333");
    T_CHECK(sd_f16_to_f32(0x7bff) == 65504.0f, "f16 max");
    T_CHECK(sd_f16_to_f32(0x0001) == 0x1p-24f, "f16 min subnormal");
    T_CHECK(sd_f16_to_f32(0x03ff) == 0x1.ff8p-15f, "f16 max subnormal");
    T_CHECK(sd_f16_to_f32(0x0400) == 0x1p-14f, "f16 min normal");
    f = sd_f16_to_f32(0x8000);
    T_CHECK(f == 0.0f && signbit(f), "f16 -0");
    T_CHECK(sd_f16_to_f32(0x8001) == -0x1p-24f, "f16 -subnormal");
    T_CHECK(isinf(sd_f16_to_f32(0x7c00)) && sd_f16_to_f32(0x7c00) > 0,
            "f16 inf");
    T_CHECK(isinf(sd_f16_to_f32(0xfc00)) && sd_f16_to_f32(0xfc00) < 0,
            "f16 -inf");
    T_CHECK(isnan(sd_f16_to_f32(0x7e00)), "f16 nan");
    T_CHECK(isnan(sd_f16_to_f32(0x7c01)), "f16 snan");

    /* f8 e4m3fn: bias 7, no inf, S.1111.111 is NaN */
    T_CHECK(sd_f8e4m3_to_f32(0x38) == 1.0f, "e4m3 1");
    T_CHECK(sd_f8e4m3_to_f32(0x40) == 2.0f, "e4m3 2");
    T_CHECK(sd_f8e4m3_to_f32(0xb8) == -1.0f, "e4m3 -1");
    T_CHECK(sd_f8e4m3_to_f32(0x7e) == 448.0f, "e4m3 max");
    T_CHECK(sd_f8e4m3_to_f32(0xfe) == -448.0f, "e4m3 -max");
    T_CHECK(sd_f8e4m3_to_f32(0x78) == 256.0f, "e4m3 256 (not inf)");
    T_CHECK(sd_f8e4m3_to_f32(0x01) == 0x1p-9f, "e4m3 min subnormal");
    T_CHECK(sd_f8e4m3_to_f32(0x07) == 7 * 0x1p-9f, "e4m3 max subnormal");
    T_CHECK(sd_f8e4m3_to_f32(0x08) == 0x1p-6f, "e4m3 min normal");
    T_CHECK(sd_f8e4m3_to_f32(0x00) == 0.0f, "e4m3 0");
    T_CHECK(isnan(sd_f8e4m3_to_f32(0x7f)), "e4m3 nan");
    T_CHECK(isnan(sd_f8e4m3_to_f32(0xff)), "e4m3 -nan");

    /* f8 e5m2: bias 15, inf and nan like IEEE */
    T_CHECK(sd_f8e5m2_to_f32(0x3c) == 1.0f, "e5m2 1");
    T_CHECK(sd_f8e5m2_to_f32(0xc0) == -2.0f, "e5m2 -2");
    T_CHECK(sd_f8e5m2_to_f32(0x7b) == 57344.0f, "e5m2 max");
    T_CHECK(sd_f8e5m2_to_f32(0x01) == 0x1p-16f, "e5m2 min subnormal");
    T_CHECK(sd_f8e5m2_to_f32(0x04) == 0x1p-14f, "e5m2 min normal");
    T_CHECK(isinf(sd_f8e5m2_to_f32(0x7c)), "e5m2 inf");
    T_CHECK(isinf(sd_f8e5m2_to_f32(0xfc)) && sd_f8e5m2_to_f32(0xfc) < 0,
            "e5m2 -inf");
    T_CHECK(isnan(sd_f8e5m2_to_f32(0x7d)) && isnan(sd_f8e5m2_to_f32(0xff)),
            "e5m2 nan");

    /* f32 -> bf16, round to nearest even */
    T_CHECK(sd_f32_to_bf16(1.0f) == 0x3f80, "to bf16 1");
    T_CHECK(sd_f32_to_bf16(-2.0f) == 0xc000, "to bf16 -2");
    T_CHECK(sd_f32_to_bf16(0x1.01p0f) == 0x3f80, "to bf16 tie to even down");
    T_CHECK(sd_f32_to_bf16(0x1.03p0f) == 0x3f82, "to bf16 tie to even up");
    T_CHECK(sd_f32_to_bf16(0x1.0101p0f) == 0x3f81, "to bf16 above tie");
    T_CHECK(sd_f32_to_bf16(0x1.fffffep127f) == 0x7f80, "to bf16 overflow");
    T_CHECK(sd_f32_to_bf16(INFINITY) == 0x7f80, "to bf16 inf");
    T_CHECK(sd_f32_to_bf16(-INFINITY) == 0xff80, "to bf16 -inf");
    T_CHECK(isnan(sd_bf16_to_f32(sd_f32_to_bf16(NAN))), "to bf16 nan");
    {
        uint32_t  u = 0x7f800001;       /* NaN whose payload rounds away */

        memcpy(&f, &u, sizeof(f));
        T_CHECK(isnan(sd_bf16_to_f32(sd_f32_to_bf16(f))),
                "to bf16 low-payload nan stays nan");
        u = 0xffffffff;
        memcpy(&f, &u, sizeof(f));
        T_CHECK(isnan(sd_bf16_to_f32(sd_f32_to_bf16(f))),
                "to bf16 all-ones nan stays nan");
    }

    T_CHECK(sd_dtype_size(SD_DT_BF16) == 2 && sd_dtype_size(SD_DT_I64) == 8
            && strcmp(sd_dtype_name(SD_DT_F8_E4M3), "F8_E4M3") == 0,
            "dtype tables");
}


static void
test_fixtures(void)
{
    char                 path[1024];
    float                ids[77];
    sd_st               *st;
    sd_err               err;
    sd_status            rc;
    const sd_st_tensor  *t;
    const int64_t        shape[2] = { 1, 77 };

    snprintf(path, sizeof(path), "%s/golden-public.safetensors",
             t_fixtures());
    if (access(path, R_OK) != 0) {
        T_SKIP("golden fixture %s not readable", path);

    } else {
        sd_err_clear(&err);
        rc = sd_st_open(&err, path, &st);
        T_CHECK(rc == SD_OK, "open golden: %s", err.msg);
        if (rc == SD_OK) {
            T_CHECK(sd_st_count(st) > 100, "golden count %zu",
                    sd_st_count(st));
            rc = sd_st_get(&err, st, "large.p0.clip_l.ids", 2, shape, &t);
            T_CHECK(rc == SD_OK && t->dtype == SD_DT_I32,
                    "golden clip_l ids: %s", err.msg);
            if (rc == SD_OK) {
                sd_st_read_f32(&err, t, ids);
                T_CHECK(ids[0] == 49406.0f, "clip_l BOS %g", ids[0]);
            }
            t = sd_st_find(st, "large.p0.image_u8");
            T_CHECK(t && t->dtype == SD_DT_U8 && t->ndim == 4
                    && t->shape[3] == 3, "golden image_u8");
            sd_st_close(st);
        }
    }

    snprintf(path, sizeof(path), "%s/tiny-sd35-large/transformer",
             t_fixtures());
    if (access(path, R_OK) != 0) {
        T_SKIP("fixture folder %s not readable", path);
        return;
    }

    sd_err_clear(&err);
    rc = sd_st_open_dir(&err, path, &st);
    T_CHECK(rc == SD_OK, "open_dir transformer: %s", err.msg);
    if (rc == SD_OK) {
        t = sd_st_find(st, "pos_embed.pos_embed");
        T_CHECK(t && t->dtype == SD_DT_BF16 && t->ndim == 3
                && t->shape[0] == 1, "pos_embed.pos_embed");
        T_CHECK(sd_st_metadata(st, "format")
                && strcmp(sd_st_metadata(st, "format"), "pt") == 0,
                "transformer metadata");
        sd_st_close(st);
    }
}


static void
t_rmtree(const char *dir)
{
    char  cmd[600];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        printf("could not remove %s\n", dir);
    }
}


int
main(void)
{
    const char  *tmp;

    tmp = getenv("TMPDIR");
    snprintf(tdir, sizeof(tdir), "%s/sd-st-test-XXXXXX",
             (tmp && *tmp) ? tmp : "/tmp");
    if (mkdtemp(tdir) == NULL) {
        printf("mkdtemp failed\n");
        return 1;
    }

    test_conversions();
    test_malformed();
    test_valid_small();
    test_shards();
    test_open_dir();
    test_roundtrip();
    test_fixtures();

    t_rmtree(tdir);

    return T_DONE();
}
