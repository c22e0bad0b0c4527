/*
 * fit: the coefficients of engine/rng.c's sd_sfu_coef from the probe's
 * grid25_sin.d2 (MUFU.SIN at x = r 2^-25, r in [0, 2^23) is A(r)).
 * Model, per segment j = r >> 17, t = r mod 2^17, units of 2^-37:
 *     P = C0 + C1 t - C2 sq(t),  sq: partial products of t * t of weight
 *     >= 2^18 summed, >> 19;  output = P 2^-37 truncated to 24 bits.
 * Each output confines P(t) to an interval; for each C2 and each C1 left
 * open by the segment's end points, C0 must lie in the intersection of
 * all 2^17 shifted intervals. Prints the lowest C0 of the last fit found.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long G[131072], LO[131072], HI[131072];

static long
sq(long t)
{
    long s = 0;
    for (int a = 0; a < 17; a++)
        for (int b = 0; b < 17; b++)
            if ((t >> a & 1) && (t >> b & 1) && a + b >= 18)
                s += 1L << (a + b);
    return s >> 19;
}

int
main(int argc, char **argv)
{
    size_t n = (size_t) 1 << 23;
    uint32_t *v = malloc(n * 4), a = 0, b = 0;
    FILE *f = fopen(argc > 1 ? argv[1] : "grid25_sin.d2", "rb");
    if (f == NULL || fread(v, 4, n, f) != n) { fprintf(stderr, "read\n"); return 1; }
    for (size_t i = 0; i < n; i++) {            /* undo the 2nd differences */
        uint32_t x = v[i] + 2 * a - b;
        b = a; a = x; v[i] = x;
    }
    for (long t = 0; t < 131072; t++) G[t] = sq(t);

    for (int s = 0; s < 64; s++) {
        long c0 = 0, c1f = 0, c2f = 0, found = 0;
        for (long t = 0; t < 131072; t++) {
            uint32_t bits = v[((size_t) s << 17) + t];
            float fv; memcpy(&fv, &bits, 4);
            int e = (bits >> 23) & 255;
            long ulp = (long) ldexp(1, e - 150 + 37);
            LO[t] = (long) llround(ldexp(fv, 37));
            HI[t] = LO[t] + (ulp < 1 ? 1 : ulp) - 1;
        }
        for (long c2 = 0; c2 <= 2048 && !found; c2++) {
            double lo1 = (double) (LO[131071] + G[131071] * c2 - HI[0]) / 131071;
            double hi1 = (double) (HI[131071] + G[131071] * c2 - LO[0]) / 131071;
            for (long c1 = (long) floor(lo1); c1 <= (long) ceil(hi1); c1++) {
                long L = -(1L << 62), H = 1L << 62;
                for (long t = 0; t < 131072 && L <= H; t++) {
                    long q = c1 * t - c2 * G[t];
                    if (LO[t] - q > L) L = LO[t] - q;
                    if (HI[t] - q < H) H = HI[t] - q;
                }
                if (L <= H) { found = 1; c0 = L; c1f = c1; c2f = c2; }
            }
        }
        if (!found) { printf("segment %d: no fit\n", s); return 1; }
        if (c0 & 4095) { printf("segment %d: C0 %ld not a multiple of 2^12\n", s, c0); return 1; }
        printf("%s{ 0x%07lxu, %5ld, %4ld },%s", (s & 1) ? " " : "    ",
               c0 >> 12, c1f, c2f, (s & 1) ? "\n" : "");
    }
    return 0;
}
