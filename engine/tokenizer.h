/*
 * tokenizer.h: the two text tokenizers SD3.5 needs, exact to the reference
 * (Hugging Face tokenizers) ids.
 *
 * CLIP: byte-level BPE from vocab.json + merges.txt of a tokenizer folder
 * (NFC, whitespace clean-up, lower-casing, the CLIP split pattern, "</w>" word
 * ends, BOS/EOS, truncation, padding with the pad token its
 * tokenizer_config.json names).
 * T5: SentencePiece unigram from spiece.model (protobuf parsed here: pieces,
 * scores, normalizer charsmap), Viterbi segmentation, "</s>" appended, pad 0.
 *
 * Invariant: a loaded tokenizer is immutable, so one may be shared by threads.
 */

#ifndef SD_TOKENIZER_H
#define SD_TOKENIZER_H

#include <stdint.h>
#include "sd_err.h"


typedef struct sd_clip_tok  sd_clip_tok;

/* dir holds vocab.json, merges.txt and tokenizer_config.json. */
sd_status sd_clip_tok_load(sd_err *err, const char *dir, sd_clip_tok **out);
void sd_clip_tok_free(sd_clip_tok *tok);

/*
 * ids receives exactly max_len ids: BOS, tokens, EOS, then padding;
 * tokens beyond max_len - 2 are dropped (EOS is kept at the end).
 */
sd_status sd_clip_tok_encode(sd_err *err, const sd_clip_tok *tok,
    const char *text, int32_t *ids, int max_len);

int32_t sd_clip_tok_eos(const sd_clip_tok *tok);
int32_t sd_clip_tok_bos(const sd_clip_tok *tok);

/*
 * The ids of text alone (add_special_tokens=False, truncation=False, as
 * A1111 tokenizes each run of a prompt): at most cap into ids, *n of them.
 * A text of k bytes never gives more than k ids.
 */
sd_status sd_clip_tok_tokens(sd_err *err, const sd_clip_tok *tok,
    const char *text, int32_t *ids, int cap, int *n);


typedef struct sd_t5_tok  sd_t5_tok;

/* dir holds spiece.model. */
sd_status sd_t5_tok_load(sd_err *err, const char *dir, sd_t5_tok **out);
void sd_t5_tok_free(sd_t5_tok *tok);

/*
 * ids receives exactly max_len ids: tokens, "</s>", then pad (0); tokens
 * beyond max_len - 1 are dropped ("</s>" is kept at the end).
 */
sd_status sd_t5_tok_encode(sd_err *err, const sd_t5_tok *tok,
    const char *text, int32_t *ids, int max_len);

/* The ids of text alone, no "</s>": at most cap into ids, *n of them. */
sd_status sd_t5_tok_tokens(sd_err *err, const sd_t5_tok *tok,
    const char *text, int32_t *ids, int cap, int *n);
int32_t sd_t5_tok_eos(const sd_t5_tok *tok);
int32_t sd_t5_tok_pad(const sd_t5_tok *tok);

#endif /* SD_TOKENIZER_H */
