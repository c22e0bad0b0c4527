/*
 * promptenc.h: a prompt's SD3 conditioning as A1111 1.10 builds it
 * (modules/models/sd3/sd3_cond.py on modules/sd_hijack_clip.py's
 * TextConditionalModel and modules/sd_emphasis.py's "Original"):
 *
 * - the prompt is parsed into runs (prompt.h); each run is tokenized alone
 *   by the CLIP-L tokenizer, without special tokens;
 * - the tokens fill chunks of 75 (clip_len - 2): a BREAK closes the chunk,
 *   a chunk that is full moves its tail after the last comma into the next
 *   one when that comma is at most 20 tokens back (comma_padding_backtrack);
 *   each chunk is BOS, its tokens, EOS padding to 75, EOS, with multiplier 1
 *   outside the tokens;
 * - CLIP-L and CLIP-G encode every chunk (G's ids after the first EOS are 0,
 *   Sd3ClipLG.encode_with_transformers); the chunks' penultimate states,
 *   [L | G | zeros to the context width], are multiplied row by row by the
 *   token multipliers and each chunk is scaled back to its mean before
 *   weighting (z * w * mean(z) / mean(z * w));
 * - the pooled vector is chunk 0's, unweighted;
 * - T5 gets the runs' tokens (BREAK dropped, weights not applied, as
 *   Sd3T5 does), "</s>", then padding: A1111 pads or cuts to 77 x chunks
 *   (t5_len 0 here); a fixed t5_len keeps diffusers' layout (the last id
 *   "</s>" when cut), which the engine uses so that a plain prompt's
 *   context is the reference pipeline's (the golden tests).
 *
 * The context: (1, clip_len x chunks + T5 rows, joint).
 *
 * Invariant: a plain prompt of at most 75 tokens (one run, weight 1)
 * gives exactly the ids and context of sd_cond_encode_skip().
 */

#ifndef SD_PROMPTENC_H
#define SD_PROMPTENC_H

#include "model.h"
#include "tokenizer.h"


#define SD_COMMA_BACKTRACK  20      /* A1111's comma_padding_backtrack */
/* chunks kept (A1111 has no limit): 1200 CLIP tokens, the rest dropped, so
   that a 64 KiB prompt costs a bounded context */
#define SD_PROMPT_MAX_CHUNKS  16


typedef struct {
    int         n_chunks;
    int         chunk_len;      /* ids per chunk: tokens + 2 */
    int         token_count;    /* A1111's count (the UI's "n/75") */
    int32_t    *ids;            /* n_chunks x chunk_len (CLIP-L ids) */
    float      *mult;           /* n_chunks x chunk_len */
    int         t5_len;         /* 0 without a T5 tokenizer */
    int32_t    *ids_t5;         /* t5_len */
} sd_prompt_tokens;

/*
 * text: a prompt without extra-network tags. chunk_len: the CLIP context
 * (77); t5_len: as above (0: A1111's 77 x chunks); t5 may be NULL.
 */
sd_status sd_prompt_tokenize(sd_err *err, const sd_clip_tok *clip,
    const sd_t5_tok *t5, const char *text, int chunk_len, int t5_len,
    sd_prompt_tokens *out);
void sd_prompt_tokens_free(sd_prompt_tokens *t);

/*
 * The conditioning of text with the emphasis applied; clip_skip as in
 * sd_cond_encode_skip(); t5_len as above (the engine passes m->t5_len).
 */
sd_status sd_cond_encode_prompt(sd_err *err, sd_model *m, const char *text,
    int clip_skip, int t5_len, sd_cond *c);

/* The number of CLIP chunks in an encoded conditioning's context. */
int sd_cond_chunks(const sd_model *m, const sd_cond *c);

/*
 * c's context with empty chunks added after its CLIP chunks up to
 * n_chunks (A1111's empty_chunk(): the first clip_len rows of empty, the
 * conditioning of ""), into *out (context and pooled only).
 */
sd_status sd_cond_pad_chunks(sd_err *err, const sd_model *m,
    const sd_cond *c, const sd_cond *empty, int n_chunks, sd_cond *out);

/* A copy of c's context and pooled into *out, that the caller owns. */
sd_status sd_cond_copy(sd_err *err, const sd_model *m, const sd_cond *c,
    sd_cond *out);

#endif /* SD_PROMPTENC_H */
