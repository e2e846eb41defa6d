/* qcoder: matrix products straight from GGUF quantized blocks, on the CPU (x86-64 with AVX2 + FMA).
 *
 * Built at first use by gguf_linear.py (cc -O3 -march=native -fopenmp) and called through ctypes.
 *
 * y[m, n] = sum_k x[m, k] * W[n, k], W stored as GGUF rows of blocks. Like llama.cpp, the activations are
 * quantized to int8 in blocks of 32 (one fp32 scale each), so every 32-weight chunk costs one integer dot
 * product: the weights are read once, in their file format, and never expanded to floats in memory.
 *
 * Every weight type decodes a 32-value chunk to unsigned bytes u (0..63) with
 *     w = scale * u + bias        (Q4_0: scale d, bias -8d; Q4_K: scale d*sc, bias -dmin*m; ...)
 * so that  sum_i w_i * x_i = scale * dx * (u . xq) + bias * dx * sum(xq),
 * where dx * sum(xq) is computed once per activation block (sums16, per half block for Q6_K's 16-value scales).
 * Q8_0 is signed: its dot product uses |w| . (x with w's sign) instead.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "qcoder's GGUF kernels need x86-64 with AVX2, FMA and F16C"
#endif
#include <immintrin.h>

#define INLINE static inline __attribute__((always_inline))

enum { Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q5_0X8 = 106, Q8_0X8 = 108 };

typedef struct {       /* one stored matrix; a fused projection (q|k|v, gate|up) is several, one after another */
    int32_t type;
    int32_t _pad;
    const uint8_t *data; /* rows * row_bytes bytes */
    int64_t rows;
    int64_t row_bytes;
} qc_part;


INLINE float half(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 int32 lanes, lane j = sum of u[4j..4j+3] * x[4j..4j+3] (u unsigned, at most 128 where VNNI is missing) */
INLINE __m256i dot_u8s8(__m256i u, __m256i x) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, x);
#elif defined(__AVXVNNI__)
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, x);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1));
#endif
}

/* dot_u8s8 with lanes 0-3 (values 0-15) times w0 and lanes 4-7 (values 16-31) times w1: Q6_K's 16-value sub-block
 * scales. Without VNNI the weights ride in the 16-bit pair sums' madd instead of ones, for free (u <= 63 and
 * |x| <= 127 keep maddubs' pair sums exact); the integers are the same either way. */
INLINE __m256i dot_u8s8_halves(__m256i u, __m256i x, int w0, int w1) {
#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__)
    return _mm256_mullo_epi32(dot_u8s8(u, x), _mm256_set_m128i(_mm_set1_epi32(w1), _mm_set1_epi32(w0)));
#else
    const __m256i w = _mm256_set_m128i(_mm_set1_epi16((short)w1), _mm_set1_epi16((short)w0));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), w);
#endif
}

/* 32 bits -> 32 bytes, 0x10 where the bit is set (the fifth bit of Q5_0 / Q5_1 values) */
INLINE __m256i fifth_bits(const uint8_t *p) {
    uint32_t bits;
    memcpy(&bits, p, 4);
#if defined(__AVX512BW__) && defined(__AVX512VL__)
    return _mm256_maskz_mov_epi8((__mmask32)bits, _mm256_set1_epi8(0x10));
#else
    /* byte i takes source byte i/8, then keeps bit i%8 */
    const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((int64_t)0x8040201008040201ULL);
    __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int32_t)bits), pick), bit);
    return _mm256_and_si256(_mm256_cmpeq_epi8(v, bit), _mm256_set1_epi8(0x10));
#endif
}

/* 16 bytes of nibbles -> 32 values: the low nibbles first, then the high ones (Q4_0 / Q4_1 / Q5_x order). The bytes
 * are loaded into both halves (a load, no shuffle), and the upper half shifted by 4 as 32-bit lanes: the mask drops
 * what crosses from one byte into the next. */
INLINE __m256i nibbles16(const uint8_t *p) {
    const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    const __m256i shifted = _mm256_srlv_epi32(both, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    return _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F));
}

/* Q4_K / Q5_K: 8 six-bit scales and mins packed in 12 bytes s. Sub-block j < 4: scale s[j] & 63, min s[j+4] & 63;
 * j >= 4: the low (scale) or high (min) nibble of s[j+4], plus the top two bits of s[j-4] (scale) or s[j] (min).
 * Unpacked four sub-blocks at a time with 32-bit masks. */
INLINE void k_scales_mins(const uint8_t *s, uint8_t *scales, uint8_t *mins) {
    uint32_t w0, w1, w2;
    memcpy(&w0, s, 4), memcpy(&w1, s + 4, 4), memcpy(&w2, s + 8, 4);
    const uint32_t sc[2] = {w0 & 0x3F3F3F3F, (w2 & 0x0F0F0F0F) | (((w0 >> 6) & 0x03030303) << 4)};
    const uint32_t mn[2] = {w1 & 0x3F3F3F3F, ((w2 >> 4) & 0x0F0F0F0F) | (((w1 >> 6) & 0x03030303) << 4)};
    memcpy(scales, sc, 8), memcpy(mins, mn, 8);
}

/* Q4_K / Q5_K sub-block j (0-7) of a super-block: 32 values 0-15 from the nibbles qs (two sub-blocks per 32 bytes),
 * 0-31 with Q5_K's fifth bits (bit j of each byte of `high`) */
INLINE __m256i k_values(const uint8_t *qs, __m256i high, int j, int q5) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * (j / 2)));
    __m256i u = _mm256_and_si256(j & 1 ? _mm256_srli_epi16(q, 4) : q, _mm256_set1_epi8(0x0F));
    if (q5) {
        const __m256i fifth = _mm256_and_si256(_mm256_srli_epi16(high, j), _mm256_set1_epi8(1));
        u = _mm256_or_si256(u, _mm256_slli_epi16(fifth, 4));
    }
    return u;
}

/* Q6_K chunk k (0-3) of half h of the super-block at p: 32 values 0-63, low nibbles from ql, two high bits from qh
 * (the half's 32 bytes of them) */
INLINE __m256i q6k_values(const uint8_t *p, __m256i qh, int h, int k) {
    const __m256i ql = _mm256_loadu_si256((const __m256i *)(p + 64 * h + 32 * (k & 1)));
    const __m256i lo = k >> 1 ? _mm256_srli_epi16(ql, 4) : ql;
    /* the two bits at 2k moved to bits 4-5 in one shift (k = 2: already there) instead of down and back up */
    const __m256i hi = k == 0 ? _mm256_slli_epi16(qh, 4) : k == 1 ? _mm256_slli_epi16(qh, 2)
                     : k == 2 ? qh : _mm256_srli_epi16(qh, 2);
    const __m256i low4 = _mm256_set1_epi8(0x0F), bits45 = _mm256_set1_epi8(0x30);
    return _mm256_or_si256(_mm256_and_si256(lo, low4), _mm256_and_si256(hi, bits45));
}

/* Q5_0X8: Q5_0 rows regrouped at load time (qc_regroup) so that AVX2 decodes them cheaply. Each group of up to
 * eight blocks holds their fp16 scales (2n bytes), then the fifth bits transposed (32 bytes: bit j of byte i is the
 * fifth bit of value i of block j), then the nibbles of block pairs (32 bytes per pair: byte i holds value i of
 * block 2k in its low nibble, of block 2k+1 in its high one). A chunk then costs a load, a shift and three masks
 * instead of Q5_0's nibble shuffle and 32-bit expansion (about 13 vector ops), and a group's scales are one load
 * instead of a gather. Full groups are 176 bytes, as in Q5_0; a row's last group may be a few bytes longer. */
INLINE int64_t q5x8_group_bytes(int n) { return 2 * n + 32 + 32 * ((n + 1) / 2); }

/* chunk j of a group of n blocks at g: 32 values 0-31 */
INLINE __m256i q5x8_values(const uint8_t *g, int n, int j) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)(g + 2 * n + 32 + 32 * (j / 2)));
    const __m256i low = _mm256_and_si256(j & 1 ? _mm256_srli_epi16(q, 4) : q, _mm256_set1_epi8(0x0F));
    const __m256i h = _mm256_loadu_si256((const __m256i *)(g + 2 * n));
    /* bit j to bit 4 of each byte: 16-bit shifts of at most 4 move no bit that the mask keeps across bytes */
    const __m256i fifth = j < 4 ? _mm256_slli_epi16(h, 4 - j) : _mm256_srli_epi16(h, j - 4);
    return _mm256_or_si256(low, _mm256_and_si256(fifth, _mm256_set1_epi8(0x10)));
}

/* ------------------------------------------------------------------ walking a row's chunks
 * FOR_EACH_CHUNK runs its body for each 32-value chunk `blk` of the row at `w`, with
 *   u       the 32 values as bytes: unsigned 0..63, or signed int8 where SIGNED (Q8_0)
 *   s0, b0  scale and bias of values 0-15 (w = s * u + b), s1, b1 of values 16-31 (they differ only where
 *           HALVES: Q6_K's 16-value sub-blocks); s0 = dscale * isc0 and s1 = dscale * isc1 with integer isc
 *           (1 except for Q6_K)
 * SIGNED and HALVES are constants in each case, so the body's branches on them fold away. */

/* Q4_0, Q4_1, Q5_0, Q5_1: blocks of 32 with one scale; OFFSET: what the unsigned values are centred on */
#define SMALL_BLOCKS(TYPE, FIVE, HAS_MIN, w, nb, ...)                                                          \
    case TYPE: {                                                                                               \
        const int SIGNED = 0, HALVES = 0, OFFSET = HAS_MIN ? 0 : (FIVE ? 16 : 8);                              \
        const int size = 18 + 2 * HAS_MIN + 4 * FIVE;                                                          \
        for (int blk = 0; blk < (nb); blk++) {                                                                 \
            const uint8_t *p = (w) + (int64_t)size * blk, *qs = p + 2 + 2 * HAS_MIN + 4 * FIVE;                \
            const float s0 = half(p), s1 = s0, dscale = s0;                                                    \
            const float b0 = HAS_MIN ? half(p + 2) : -(float)OFFSET * s0, b1 = b0;                             \
            const int isc0 = 1, isc1 = 1;                                                                      \
            __m256i u = nibbles16(qs);                                                                         \
            if (FIVE) u = _mm256_or_si256(u, fifth_bits(p + 2 + 2 * HAS_MIN));                                 \
            (void)SIGNED, (void)HALVES, (void)OFFSET, (void)s1, (void)b1, (void)isc0, (void)isc1, (void)dscale; \
            __VA_ARGS__                                                                                        \
        }                                                                                                      \
        break;                                                                                                 \
    }

/* Q4_K, Q5_K: super-blocks of 256, eight 32-value sub-blocks with 6-bit scales and mins */
#define K_BLOCKS(TYPE, Q5, w, nb, ...)                                                                         \
    case TYPE: {                                                                                               \
        const int SIGNED = 0, HALVES = 0, OFFSET = 0;                                                          \
        for (int sb = 0; sb < (nb) / 8; sb++) {                                                                \
            const uint8_t *p = (w) + (int64_t)(Q5 ? 176 : 144) * sb, *qs = p + (Q5 ? 48 : 16);                 \
            const float d = half(p), dmin = half(p + 2);                                                       \
            const __m256i high = Q5 ? _mm256_loadu_si256((const __m256i *)(p + 16)) : _mm256_setzero_si256();  \
            uint8_t scales[8], mins[8];                                                                        \
            k_scales_mins(p + 4, scales, mins);                                                                \
            for (int j = 0; j < 8; j++) {                                                                      \
                const int blk = sb * 8 + j, sc = scales[j], mn = mins[j];                                      \
                const float s0 = d * (float)sc, s1 = s0, b0 = -dmin * (float)mn, b1 = b0, dscale = s0;         \
                const int isc0 = 1, isc1 = 1;                                                                  \
                const __m256i u = k_values(qs, high, j, Q5);                                                   \
                (void)SIGNED, (void)HALVES, (void)OFFSET, (void)s1, (void)b1, (void)isc0, (void)isc1;         \
                (void)dscale;                                                                                  \
                __VA_ARGS__                                                                                    \
            }                                                                                                  \
        }                                                                                                      \
        break;                                                                                                 \
    }

/* Q5_0X8, Q8_0X8: groups of up to eight blocks of GROUP bytes (when full), their scales first (see qc_regroup);
 * VALUES: chunk j of the group at g */
#define X8_GROUPS(TYPE, GROUP, SIGNED_, OFFSET_, VALUES, w, nb, ...)                                           \
    case TYPE: {                                                                                               \
        const int SIGNED = SIGNED_, HALVES = 0, OFFSET = OFFSET_;                                              \
        for (int g0 = 0; g0 < (nb); g0 += 8) {                                                                 \
            const int n = (nb) - g0 < 8 ? (nb) - g0 : 8;                                                       \
            const uint8_t *g = (w) + GROUP * (int64_t)(g0 / 8);                                                \
            for (int j = 0; j < n; j++) {                                                                      \
                const int blk = g0 + j, isc0 = 1, isc1 = 1;                                                    \
                const float s0 = half(g + 2 * j), s1 = s0, dscale = s0, b0 = -(float)OFFSET * s0, b1 = b0;     \
                const __m256i u = VALUES;                                                                      \
                (void)SIGNED, (void)HALVES, (void)OFFSET, (void)s1, (void)b0, (void)b1, (void)isc0, (void)isc1; \
                (void)dscale;                                                                                  \
                __VA_ARGS__                                                                                    \
            }                                                                                                  \
        }                                                                                                      \
        break;                                                                                                 \
    }

#define FOR_EACH_CHUNK(type, w, nb, ...)                                                                       \
    switch (type) {                                                                                            \
        SMALL_BLOCKS(Q4_0, 0, 0, w, nb, __VA_ARGS__)                                                           \
        SMALL_BLOCKS(Q4_1, 0, 1, w, nb, __VA_ARGS__)                                                           \
        SMALL_BLOCKS(Q5_0, 1, 0, w, nb, __VA_ARGS__)                                                           \
        SMALL_BLOCKS(Q5_1, 1, 1, w, nb, __VA_ARGS__)                                                           \
        K_BLOCKS(Q4_K, 0, w, nb, __VA_ARGS__)                                                                  \
        K_BLOCKS(Q5_K, 1, w, nb, __VA_ARGS__)                                                                  \
    case Q8_0: {                                                                                               \
        const int SIGNED = 1, HALVES = 0, OFFSET = 0;                                                          \
        for (int blk = 0; blk < (nb); blk++) {                                                                 \
            const uint8_t *p = (w) + 34 * (int64_t)blk;                                                        \
            const float s0 = half(p), s1 = s0, b0 = 0.0f, b1 = 0.0f, dscale = s0;                              \
            const int isc0 = 1, isc1 = 1;                                                                      \
            const __m256i u = _mm256_loadu_si256((const __m256i *)(p + 2));                                    \
            (void)SIGNED, (void)HALVES, (void)OFFSET, (void)s1, (void)b0, (void)b1, (void)isc0, (void)isc1;   \
            (void)dscale;                                                                                      \
            __VA_ARGS__                                                                                        \
        }                                                                                                      \
        break;                                                                                                 \
    }                                                                                                          \
        X8_GROUPS(Q5_0X8, 176, 0, 16, q5x8_values(g, n, j), w, nb, __VA_ARGS__)                                  \
        X8_GROUPS(Q8_0X8, 272, 1, 0, _mm256_loadu_si256((const __m256i *)(g + 2 * n + 32 * j)), w, nb, __VA_ARGS__) \
    case Q6_K: {                                                                                               \
        const int SIGNED = 0, HALVES = 1, OFFSET = 32;                                                         \
        for (int sb = 0; sb < (nb) / 8; sb++) {                                                                \
            const uint8_t *p = (w) + 210 * (int64_t)sb;                                                        \
            const float d = half(p + 208);                                                                     \
            const int8_t *sc = (const int8_t *)(p + 192);                                                      \
            for (int h = 0; h < 2; h++) {                                                                      \
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(p + 128 + 32 * h));                    \
                for (int k = 0; k < 4; k++) {                                                                  \
                    const int blk = sb * 8 + 4 * h + k;                                                        \
                    const __m256i u = q6k_values(p, qh, h, k);                                                 \
                    const float s0 = d * (float)sc[8 * h + 2 * k], s1 = d * (float)sc[8 * h + 2 * k + 1];      \
                    const float b0 = -32.0f * s0, b1 = -32.0f * s1, dscale = d;                                \
                    const int isc0 = sc[8 * h + 2 * k], isc1 = sc[8 * h + 2 * k + 1];                          \
                    (void)SIGNED, (void)HALVES, (void)OFFSET, (void)isc0, (void)isc1, (void)dscale;            \
                    __VA_ARGS__                                                                                \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
        break;                                                                                                 \
    }                                                                                                          \
    }

/* ------------------------------------------------------------------ the dot products of one weight row
 * Q8_0 (signed) uses |w| . (x with w's sign) and has no bias; Q6_K's two sub-block scales multiply the lanes of
 * its halves (integers) before they are summed. The register tiles (up to eight rows) and row_dot8 sum in different
 * orders, so a row's result can differ in the last bits between a batch of up to eight rows and a larger one; within
 * each it does not depend on the other rows. */

typedef struct {      /* one or eight activation rows */
    const int8_t *q;  /* [rows, K] */
    const float *d;   /* [nb, rows]: block scale */
    const float *s;   /* [nb, 2, rows]: scale * sum of each half block */
    const __m256i *xs; /* one row: [nb], -16 times the sums of x's four-byte lanes (Q5_0's offset), else NULL */
    int K, nb;
} qc_rows;

INLINE __m256i sum_lanes8(const __m256i v[8]) { /* lane i = sum of the 8 lanes of v[i] */
    __m256i a = _mm256_hadd_epi32(v[0], v[1]), b = _mm256_hadd_epi32(v[2], v[3]);
    __m256i c = _mm256_hadd_epi32(v[4], v[5]), e = _mm256_hadd_epi32(v[6], v[7]);
    __m256i ab = _mm256_hadd_epi32(a, b), ce = _mm256_hadd_epi32(c, e); /* [v0 v1 v2 v3 | v0 v1 v2 v3] halves */
    return _mm256_add_epi32(_mm256_permute2x128_si256(ab, ce, 0x20), _mm256_permute2x128_si256(ab, ce, 0x31));
}

#define CHUNK_DOT(x_ptr)                                                                                       \
    ({                                                                                                         \
        __m256i x_ = _mm256_loadu_si256((const __m256i *)(x_ptr));                                             \
        if (SIGNED) x_ = _mm256_sign_epi8(x_, u);                                                              \
        __m256i v_ = HALVES ? dot_u8s8_halves(u, x_, isc0, isc1)                                               \
                            : dot_u8s8(SIGNED ? _mm256_abs_epi8(u) : u, x_);                                   \
        v_;                                                                                                    \
    })

/* ------------------------------------------------------------------ up to eight activation rows (decode)
 * A weight row's chunks go one at a time into fp32 accumulators, each with its scale (the weight block's times the
 * activation block's) broadcast from a small table that vector ops fill for eight chunks at once: per chunk there
 * remain the integer dot product, one conversion and one FMA. Values centred on an offset (Q4_0 and Q5_0 on 8 and
 * 16, Q6_K on 32, Q8_0 with VNNI shifted by 128 to be unsigned) are corrected in the integers: the dot product
 * starts from -offset * (the lane's sum of x, qc_rows.xs), exactly sum((u - offset) * x) with u unsigned, and x
 * needs no per-row sign flips. */

/* acc + dot_u8s8(u, x) */
INLINE __m256i dot_u8s8_acc(__m256i acc, __m256i u, __m256i x) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(acc, u, x);
#elif defined(__AVXVNNI__)
    return _mm256_dpbusd_avx_epi32(acc, u, x);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1)));
#endif
}

#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__)
#define Q8_UNSIGNED 1 /* Q8_0 as u + 128 (VNNI sums 255 * 127 products exactly; maddubs' 16-bit pairs would not) */
#else
#define Q8_UNSIGNED 0
#endif

/* After filling a table of scales: the compiler must read them back from memory, where a broadcast is a plain load
 * (folded into the FMA), instead of shuffling them out of the register they were computed in. */
#define TABLE_BARRIER(table) __asm__("" : "+m"(table))

/* Software prefetch of n bytes at p: the weights stream from memory, and the hardware prefetchers alone left
 * decode waiting on them (measured: +13% decode tokens/s for the small types' next rows, +10% more with the
 * K-quants'; twice as far ahead was no better) */
INLINE void prefetch(const uint8_t *p, int n) {
    for (int o = 0; o < n; o += 64) _mm_prefetch((const char *)p + o, _MM_HINT_T0);
}

/* Eight fp16 numbers `stride` bytes apart (the scales of eight blocks), as fp32: one gather */
INLINE __m256 halves8(const uint8_t *p, int stride, __m256i lanes) {
    const __m256i at = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(stride));
    const __m256i g = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), (const int *)p, at, lanes, 1);
#if defined(__AVX512VL__)
    const __m128i h = _mm256_cvtepi32_epi16(g);
#else
    const __m256i lo = _mm256_and_si256(g, _mm256_set1_epi32(0xFFFF));
    const __m128i h = _mm_packus_epi32(_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1));
#endif
    return _mm256_cvtph_ps(h);
}

/* ------------------------------------------------------------------ register tiles (decode, small batches)
 * R weight rows x M activation rows (M <= 8: a decode step's sequences, a speculative verification): each weight
 * chunk is decoded once per tile and used for all M rows, so a batch of M costs far less than M single rows (the
 * decoding is about half the work of a chunk). Each (weight row, activation row) pair has one fp32 accumulator
 * that sums the chunks in order, so a result depends on neither R, M nor the other rows.
 * R for each M was measured (Zen 4, and Haswell builds on it): the accumulators, the decoded chunks and their
 * operands fit the vector registers (32 with AVX-512, else 16); Q6_K keeps more per weight row. */
#if defined(__AVX512VL__)
#define QC_ROWS 8
#define TILE_ROWS(M) ((M) <= 3 ? 8 : (M) <= 6 ? 4 : 2)
#define Q6_ROWS(M) ((M) == 2 ? 4 : 2)
#else
#define QC_ROWS 4
#define TILE_ROWS(M) ((M) <= 2 ? 4 : (M) <= 4 ? 2 : 1)
#define Q6_ROWS(M) ((M) <= 2 ? 2 : 1)
#endif
#define UNROLL _Pragma("GCC unroll 8")

/* Bytes per block of a small-block type (Q5_0X8, Q8_0X8: per block of a full group) */
INLINE int small_block_bytes(const int type) {
    return type == Q8_0 || type == Q8_0X8 ? 34 : type == Q4_0 ? 18 : type == Q4_1 ? 20 : type == Q5_1 ? 24 : 22;
}

/* Chunk j of the group of n blocks from b0, for R weight rows and M activation rows (see small_tile) */
INLINE void small_chunk(const int type, const int R, const int M, const uint8_t *w, int64_t stride, const qc_rows *a,
                        int b0, int n, int j, float scale[QC_ROWS][8][8], __m256 acc[QC_ROWS][8],
                        float bias[QC_ROWS][8]) {
    const int x8 = type == Q5_0X8 || type == Q8_0X8;
    const int five = type == Q5_0 || type == Q5_1 || type == Q5_0X8, has_min = type == Q4_1 || type == Q5_1;
    const int q8 = type == Q8_0 || type == Q8_0X8, size = small_block_bytes(type);
    const int shift = q8 ? (Q8_UNSIGNED ? 7 : 0) : has_min ? 0 : five ? 4 : 3; /* log2 of the offset, 0: none */
    const int b = b0 + j;
    UNROLL for (int r = 0; r < R; r++) {
        const uint8_t *p = w + r * stride + (int64_t)size * b;
        __m256i u;
        if (x8 && !q8) {
            u = q5x8_values(w + r * stride + (int64_t)size * b0, n, j);
        } else if (q8) {
            const uint8_t *values = x8 ? w + r * stride + (int64_t)size * b0 + 2 * n + 32 * j : p + 2;
            u = _mm256_loadu_si256((const __m256i *)values);
            u = Q8_UNSIGNED ? _mm256_xor_si256(u, _mm256_set1_epi8((char)0x80)) : u;
        } else {
            u = nibbles16(p + 2 + 2 * has_min + 4 * five);
            if (five) u = _mm256_or_si256(u, fifth_bits(p + 2 + 2 * has_min));
        }
        UNROLL for (int m = 0; m < M; m++) {
            const __m256i x = _mm256_loadu_si256((const __m256i *)(a[m].q + 32 * b));
            const __m256i off = !shift     ? _mm256_setzero_si256()
                                : shift == 4 ? a[m].xs[b]
                                : shift > 4  ? _mm256_slli_epi32(a[m].xs[b], shift - 4)
                                             : _mm256_srai_epi32(a[m].xs[b], 4 - shift);
            const __m256i v = q8 && !Q8_UNSIGNED ? dot_u8s8(_mm256_abs_epi8(u), _mm256_sign_epi8(x, u))
                                                 : dot_u8s8_acc(off, u, x);
            acc[r][m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(scale[r][m][j]), acc[r][m]);
            if (has_min) bias[r][m] = fmaf(half(p + 2), a[m].s[2 * b] + a[m].s[2 * b + 1], bias[r][m]);
        }
    }
}

/* Small-block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0; regrouped Q5_0X8, Q8_0X8): per group of eight blocks a table of
 * scales (the weight block's times the activation block's, filled by vector ops) whose entries the chunks' FMAs
 * broadcast. */
INLINE void small_tile(const int type, const int R, const int M, const uint8_t *w, int64_t stride, const qc_rows *a,
                       float *out, int64_t ldo) {
    /* regrouped rows (Q5_0X8, Q8_0X8): full groups of eight blocks are as long as eight of the file's blocks */
    const int x8 = type == Q5_0X8 || type == Q8_0X8, size = small_block_bytes(type), nb = a[0].nb;
    __m256 acc[QC_ROWS][8];
    float bias[QC_ROWS][8], scale[QC_ROWS][8][8] __attribute__((aligned(32)));
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int m = 0; m < M; m++) {
        acc[r][m] = _mm256_setzero_ps();
        bias[r][m] = 0.0f;
    }
    for (int b0 = 0; b0 < nb; b0 += 8) {
        const int n = nb - b0 < 8 ? nb - b0 : 8;
        const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *p = w + r * stride + (int64_t)size * b0;
            prefetch(p + R * stride, 8 * size); /* the same blocks of the next R rows */
            const __m256 ws = x8 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)) : halves8(p, size, lanes);
            UNROLL for (int m = 0; m < M; m++)
                _mm256_store_ps(scale[r][m], _mm256_mul_ps(ws, _mm256_maskload_ps(a[m].d + b0, lanes)));
        }
        TABLE_BARRIER(scale);
        if (type == Q5_0X8 && n == 8) { /* unrolled: Q5_0X8's shifts and offsets become constants (1.1x) */
            UNROLL for (int j = 0; j < 8; j++) small_chunk(type, R, M, w, stride, a, b0, 8, j, scale, acc, bias);
        } else {
            for (int j = 0; j < n; j++) small_chunk(type, R, M, w, stride, a, b0, n, j, scale, acc, bias);
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int m = 0; m < M; m++)
        out[m * ldo + r] = hsum(acc[r][m]) + bias[r][m];
}

/* Q4_K / Q5_K: per super-block, the eight sub-block scales d * sc * dx of each pair in a table, and the min terms
 * -dmin * mn * sum(x) of the eight sub-blocks in one FMA into the same accumulator. */
INLINE void k_tile(const int Q5, const int R, const int M, const uint8_t *w, int64_t stride, const qc_rows *a,
                   float *out, int64_t ldo) {
    const int size = Q5 ? 176 : 144;
    __m256 acc[QC_ROWS][8];
    float scale[QC_ROWS][8][8] __attribute__((aligned(32)));
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int m = 0; m < M; m++) acc[r][m] = _mm256_setzero_ps();
    for (int sb = 0; sb < a[0].nb / 8; sb++) {
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *p = w + r * stride + (int64_t)size * sb;
            prefetch(p + R * stride, size); /* the next R rows' */
            uint8_t scales[8], mins[8];
            k_scales_mins(p + 4, scales, mins);
            const __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)scales)));
            const __m256 mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)mins)));
            const __m256 scd = _mm256_mul_ps(sc, _mm256_set1_ps(half(p)));
            const __m256 mnd = _mm256_mul_ps(mn, _mm256_set1_ps(-half(p + 2)));
            UNROLL for (int m = 0; m < M; m++) {
                _mm256_store_ps(scale[r][m], _mm256_mul_ps(scd, _mm256_loadu_ps(a[m].d + 8 * sb)));
                /* sums of x per sub-block: the [block][half] pairs added, hadd's lane order undone */
                const float *xs2 = a[m].s + 16 * sb;
                const __m256 pairs = _mm256_hadd_ps(_mm256_loadu_ps(xs2), _mm256_loadu_ps(xs2 + 8));
                const __m256 xsum = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(pairs), 0xD8));
                acc[r][m] = _mm256_fmadd_ps(mnd, xsum, acc[r][m]);
            }
        }
        TABLE_BARRIER(scale);
        for (int j = 0; j < 8; j++) {
            UNROLL for (int r = 0; r < R; r++) {
                const uint8_t *p = w + r * stride + (int64_t)size * sb;
                const __m256i high = Q5 ? _mm256_loadu_si256((const __m256i *)(p + 16)) : _mm256_setzero_si256();
                const __m256i u = k_values(p + (Q5 ? 48 : 16), high, j, Q5);
                UNROLL for (int m = 0; m < M; m++) {
                    const __m256i x = _mm256_loadu_si256((const __m256i *)(a[m].q + 32 * (sb * 8 + j)));
                    const __m256i v = dot_u8s8(u, x);
                    acc[r][m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(scale[r][m][j]), acc[r][m]);
                }
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int m = 0; m < M; m++) out[m * ldo + r] = hsum(acc[r][m]);
}

/* Q6_K: values 0-63 centred on 32 in the integers (see above). A chunk's lanes 0-3 are its first 16 values, 4-7 the
 * second, each with its own int8 sub-block scale: per chunk and weight row one vector of d * sc (a permute of the
 * half's eight), times the activation block's scale for each row. */
INLINE void q6k_tile(const int R, const int M, const uint8_t *w, int64_t stride, const qc_rows *a, float *out,
                     int64_t ldo) {
    __m256 acc[QC_ROWS][8];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int m = 0; m < M; m++) acc[r][m] = _mm256_setzero_ps();
    for (int sb = 0; sb < a[0].nb / 8; sb++) {
        UNROLL for (int r = 0; r < R; r++) prefetch(w + r * stride + 210 * (int64_t)sb + R * stride, 210);
        for (int h = 0; h < 2; h++) {
            __m256i qh[QC_ROWS];
            __m256 fd[QC_ROWS]; /* d * sc of the half's eight sub-blocks */
            UNROLL for (int r = 0; r < R; r++) {
                const uint8_t *p = w + r * stride + 210 * (int64_t)sb;
                qh[r] = _mm256_loadu_si256((const __m256i *)(p + 128 + 32 * h));
                const __m128i sc8 = _mm_loadl_epi64((const __m128i *)(p + 192 + 8 * h));
                fd[r] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc8)), _mm256_set1_ps(half(p + 208)));
            }
            UNROLL for (int k = 0; k < 4; k++) {
                const int blk = sb * 8 + 4 * h + k;
                const __m256i pick = _mm256_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k, 2 * k + 1, 2 * k + 1, 2 * k + 1,
                                                       2 * k + 1); /* values 0-15, 16-31 */
                UNROLL for (int r = 0; r < R; r++) {
                    const __m256i u = q6k_values(w + r * stride + 210 * (int64_t)sb, qh[r], h, k);
                    const __m256 f = _mm256_permutevar8x32_ps(fd[r], pick);
                    UNROLL for (int m = 0; m < M; m++) {
                        const __m256i x = _mm256_loadu_si256((const __m256i *)(a[m].q + 32 * blk));
                        const __m256i off = _mm256_slli_epi32(a[m].xs[blk], 1);
                        const __m256i v = dot_u8s8_acc(off, u, x);
                        const __m256 s = _mm256_mul_ps(f, _mm256_set1_ps(a[m].d[blk]));
                        acc[r][m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), s, acc[r][m]);
                    }
                }
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int m = 0; m < M; m++) out[m * ldo + r] = hsum(acc[r][m]);
}

/* Every type but Q6_K, which has its own number of weight rows per tile (rows_tiled) */
INLINE void tile(const int type, const int R, const int M, const uint8_t *w, int64_t stride, const qc_rows *a,
                 float *out, int64_t ldo) {
    switch (type) {
    case Q4_0: small_tile(Q4_0, R, M, w, stride, a, out, ldo); break;
    case Q4_1: small_tile(Q4_1, R, M, w, stride, a, out, ldo); break;
    case Q5_0: small_tile(Q5_0, R, M, w, stride, a, out, ldo); break;
    case Q5_0X8: small_tile(Q5_0X8, R, M, w, stride, a, out, ldo); break;
    case Q5_1: small_tile(Q5_1, R, M, w, stride, a, out, ldo); break;
    case Q8_0: small_tile(Q8_0, R, M, w, stride, a, out, ldo); break;
    case Q8_0X8: small_tile(Q8_0X8, R, M, w, stride, a, out, ldo); break;
    case Q4_K: k_tile(0, R, M, w, stride, a, out, ldo); break;
    case Q5_K: k_tile(1, R, M, w, stride, a, out, ldo); break;
    }
}

/* `rows` consecutive rows of one part against the M activation rows a[0..M-1]: out[m * ldo + i] */
static void rows_tiled(int type, const uint8_t *w, int64_t stride, int64_t rows, const qc_rows *a, int M, float *out,
                       int64_t ldo) {
    switch (M) {
#define RUN(R, MM, CALL)                                                                                       \
    {                                                                                                          \
        int64_t i = 0;                                                                                         \
        for (; i + (R) <= rows; i += (R)) CALL((R), MM, w + i * stride, stride, a, out + i, ldo);              \
        for (; i < rows; i++) CALL(1, MM, w + i * stride, stride, a, out + i, ldo);                            \
    }
#define Q6K(R, M, ...) q6k_tile(R, M, __VA_ARGS__)
#define ANY(R, M, ...) tile(type, R, M, __VA_ARGS__)
#define TILED(MM)                                                                                              \
    case MM:                                                                                                   \
        if (type == Q6_K) RUN(Q6_ROWS(MM), MM, Q6K) else RUN(TILE_ROWS(MM), MM, ANY)                           \
        break;
        TILED(1) TILED(2) TILED(3) TILED(4) TILED(5) TILED(6) TILED(7) TILED(8)
#undef TILED
#undef ANY
#undef Q6K
#undef RUN
    }
}

/* Batches of more than eight rows (prefill) meet each weight row in groups of eight activation rows (interleaved
 * scales). The weight row is decoded once into its chunks (row_chunks) for all the groups of an L2 block, instead of
 * unpacking its nibbles and scales again for each group (measured on an AVX2 Zen: 512 rows of Q5_0 in 0.82x the
 * time). */
typedef struct {
    __m256i u;            /* the 32 values, as FOR_EACH_CHUNK gives them */
    float dscale, b0, b1; /* as FOR_EACH_CHUNK gives them */
    int isc0, isc1;
} qc_chunk;

static void row_chunks(int type, const uint8_t *w, int nb, qc_chunk *c) {
    FOR_EACH_CHUNK(type, w, nb, { c[blk] = (qc_chunk){u, dscale, b0, b1, isc0, isc1}; })
}

/* Lane m of the accumulators is row m: one FMA per chunk for all eight */
INLINE void dot8(const int SIGNED, const int HALVES, const qc_chunk *c, const qc_rows *a, int rows, float *out,
                 int64_t ldo) {
    __m256 acc = _mm256_setzero_ps(), bias = _mm256_setzero_ps();
    for (int blk = 0; blk < a->nb; blk++) {
        const __m256i u = c[blk].u;
        const int isc0 = c[blk].isc0, isc1 = c[blk].isc1;
        const float b0 = c[blk].b0, b1 = c[blk].b1;
        __m256i v[8];
        for (int m = 0; m < 8; m++) v[m] = CHUNK_DOT(a->q + (int64_t)m * a->K + 32 * blk);
        const __m256 scale = _mm256_mul_ps(_mm256_loadu_ps(a->d + 8 * blk), _mm256_set1_ps(c[blk].dscale));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum_lanes8(v)), scale, acc);
        if (!SIGNED) {
            const __m256 h0 = _mm256_loadu_ps(a->s + 16 * blk), h1 = _mm256_loadu_ps(a->s + 16 * blk + 8);
            if (HALVES)
                bias = _mm256_fmadd_ps(_mm256_set1_ps(b1), h1, _mm256_fmadd_ps(_mm256_set1_ps(b0), h0, bias));
            else
                bias = _mm256_fmadd_ps(_mm256_set1_ps(b0), _mm256_add_ps(h0, h1), bias);
        }
        (void)isc0, (void)isc1, (void)b1;
    }
    float r[8];
    _mm256_storeu_ps(r, _mm256_add_ps(acc, bias));
    for (int m = 0; m < rows; m++) out[m * ldo] = r[m];
}

static void row_dot8(int type, const qc_chunk *c, const qc_rows *a, int rows, float *out, int64_t ldo) {
    if (type == Q8_0 || type == Q8_0X8)
        dot8(1, 0, c, a, rows, out, ldo);
    else if (type == Q6_K)
        dot8(0, 1, c, a, rows, out, ldo);
    else
        dot8(0, 0, c, a, rows, out, ldo);
}

/* ------------------------------------------------------------------ activations */

/* Row m of x into group m / 8 (groups of 8 rows, or single rows when the groups are 1 wide): int8 values in q,
 * and per block the scale and the scaled sums of both halves, interleaved across the group's rows; for single rows
 * also xs (qc_rows), else NULL. */
static void quantize_row(const float *x, int K, int m, int width, int8_t *q, float *d, float *s, __m256i *xs) {
    const int nb = K / 32, g = m / width, lane = m % width;
    float *dg = d + (int64_t)g * nb * width, *sg = s + (int64_t)g * nb * 2 * width;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int b = 0; b < nb; b++) {
        const float *xb = x + (int64_t)m * K + 32 * b;
        __m256 v[4], amax = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(xb + 8 * i);
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[i]));
        }
        __m128 mx = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        mx = _mm_max_ps(mx, _mm_movehl_ps(mx, mx));
        mx = _mm_max_ss(mx, _mm_movehdup_ps(mx));
        const float scale = _mm_cvtss_f32(mx) / 127.0f;
        const __m256 inv = _mm256_set1_ps(scale > 0.0f ? 1.0f / scale : 0.0f);
        __m256i n[4];
        for (int i = 0; i < 4; i++) n[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], inv)); /* round to even */
        /* sums of each half (elements 0-15, 16-31) before packing */
        __m256i lo = _mm256_add_epi32(n[0], n[1]), hi = _mm256_add_epi32(n[2], n[3]);
        __m256i sums = _mm256_hadd_epi32(lo, hi); /* [lo01 lo23 hi01 hi23 | lo45 lo67 hi45 hi67] */
        sums = _mm256_hadd_epi32(sums, sums);
        int32_t sv[8];
        _mm256_storeu_si256((__m256i *)sv, sums);
        /* pack 32 int32 -> 32 int8, then undo the 128-bit lane interleaving of the packs */
        __m256i p16a = _mm256_packs_epi32(n[0], n[1]), p16b = _mm256_packs_epi32(n[2], n[3]);
        __m256i p8 = _mm256_packs_epi16(p16a, p16b);
        p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + (int64_t)m * K + 32 * b), p8);
        if (xs) /* -16 * sums: Q5_0's offset as is, the other offsets one shift away */
            xs[b] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(dot_u8s8(_mm256_set1_epi8(1), p8), 4));
        dg[b * width + lane] = scale;
        sg[(2 * b) * width + lane] = scale * (float)(sv[0] + sv[4]);
        sg[(2 * b + 1) * width + lane] = scale * (float)(sv[1] + sv[5]);
    }
}

/* ------------------------------------------------------------------ entry points */

int qc_features(void) {
    /* bit 0: VNNI dot products, bit 1: AVX-512BW mask moves */
    int f = 0;
#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__)
    f |= 1;
#endif
#if defined(__AVX512BW__) && defined(__AVX512VL__)
    f |= 2;
#endif
    return f;
}

/* qc_matmul for up to eight activation rows (decode, a small batch, a speculative verification) in register tiles:
 * the rows are quantized before the threads start (a few hundred ns), into buffers that the calling thread keeps
 * between calls (this runs for every projection of every layer of every token); then work items of eight weight
 * rows, each as runs of rows of one part. */
static void matmul_tiled(const qc_part *parts, int nparts, int K, const float *x, int M, float *y, int64_t ldy,
                         int threads) {
    static __thread void *buffer;
    static __thread size_t capacity;
    const int nb = K / 32;
    const size_t need = ((size_t)M * nb * (32 + 32 + 4 + 8) + 63) / 64 * 64; /* xs, q, d, s */
    if (need > capacity) {
        free(buffer);
        buffer = aligned_alloc(64, need);
        capacity = need;
    }
    __m256i *xs = buffer;
    int8_t *q = (int8_t *)(xs + (int64_t)M * nb);
    float *d = (float *)(q + (int64_t)M * K), *s = d + (int64_t)M * nb;
    qc_rows a[8];
    for (int m = 0; m < M; m++) {
        quantize_row(x, K, m, 1, q, d, s, xs + (int64_t)m * nb);
        a[m] = (qc_rows){q + (int64_t)m * K, d + (int64_t)m * nb, s + (int64_t)m * nb * 2, xs + (int64_t)m * nb, K, nb};
    }
    int64_t total = 0;
    for (int p = 0; p < nparts; p++) total += parts[p].rows;
    const int64_t tile = 8, tiles = (total + tile - 1) / tile;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t t = 0; t < tiles; t++) {
        const int64_t end = (t + 1) * tile < total ? (t + 1) * tile : total;
        for (int64_t n = t * tile; n < end;) {
            int p = 0;
            int64_t r = n;
            while (r >= parts[p].rows) r -= parts[p++].rows;
            const int64_t run = end - n < parts[p].rows - r ? end - n : parts[p].rows - r;
            rows_tiled(parts[p].type, parts[p].data + r * parts[p].row_bytes, parts[p].row_bytes, run, a, M, y + n,
                       ldy);
            n += run;
        }
    }
}

/* y[M, ldy] (columns 0..sum(rows)) = x[M, K] . concat(parts)^T.  K must be a multiple of 256 when any part is a
 * K-quant, else of 32 (the Python side checks). Up to eight rows go through register tiles (matmul_tiled: six rows
 * of a Q4_K matrix in about half the time of six single rows); more are padded with zero rows to groups of eight. */
void qc_matmul(const qc_part *parts, int nparts, int K, const float *x, int M, float *y, int64_t ldy, int threads) {
    if (M <= 8) {
        matmul_tiled(parts, nparts, K, x, M, y, ldy, threads);
        return;
    }
    const int nb = K / 32, width = 8, groups = (M + width - 1) / width, padded = groups * width;
    int8_t *q = aligned_alloc(64, ((size_t)padded * K + 63) / 64 * 64);
    float *d = calloc((size_t)padded * nb, sizeof(float));
    float *s = calloc((size_t)padded * nb * 2, sizeof(float));
    memset(q + (int64_t)M * K, 0, (size_t)(padded - M) * K);
    int64_t total = 0;
    for (int p = 0; p < nparts; p++) total += parts[p].rows;
    const int64_t tile = 8; /* weight rows per work item */
    const int64_t tiles = (total + tile - 1) / tile;
    /* Prefill: the weights pass over a block of activation groups at a time, ~256 KiB of int8 rows that stay in
     * each core's L2, instead of every weight row streaming all M rows from L3 (2.5 MB for 512 x 4864). */
    const int64_t fit = (256 << 10) / ((int64_t)width * K);
    const int block = fit > 1 ? (int)fit : 1;
#pragma omp parallel num_threads(threads)
    {
        qc_chunk *chunks = aligned_alloc(32, (size_t)nb * sizeof(qc_chunk));
#pragma omp for schedule(static)
        for (int m = 0; m < M; m++) quantize_row(x, K, m, width, q, d, s, NULL);
        for (int g0 = 0; g0 < groups; g0 += block) {
            const int g1 = g0 + block < groups ? g0 + block : groups;
#pragma omp for schedule(static)
            for (int64_t t = 0; t < tiles; t++) {
                for (int64_t n = t * tile; n < total && n < (t + 1) * tile; n++) {
                    int p = 0;
                    int64_t r = n;
                    while (r >= parts[p].rows) r -= parts[p++].rows;
                    row_chunks(parts[p].type, parts[p].data + r * parts[p].row_bytes, nb, chunks);
                    for (int g = g0; g < g1; g++) {
                        const qc_rows a = {q + (int64_t)g * width * K, d + (int64_t)g * nb * width,
                                           s + (int64_t)g * nb * 2 * width, NULL, K, nb};
                        row_dot8(parts[p].type, chunks, &a, M - g * 8 < 8 ? M - g * 8 : 8,
                                 y + (int64_t)g * width * ldy + n, ldy);
                    }
                }
            }
        }
        free(chunks);
    }
    free(q);
    free(d);
    free(s);
}

/* ------------------------------------------------------------------ regrouping at load time
 * Q5_0 and Q8_0 rows are regrouped once (into as many bytes, give or take a row's last group) so that the decode
 * kernels read each group's eight scales in one load instead of a gather, and Q5_0's values in a few masks (see
 * q5x8_values). Measured on the Zen 1 (AVX2), one decode row: Q5_0 1.6x (with small_tile's unrolling), Q8_0 1.25x
 * the speed. */

/* Q8_0X8: per group of up to eight blocks their fp16 scales, then their values */
static void regroup_q8_0(const uint8_t *src, int nb, uint8_t *dst) {
    for (int g0 = 0; g0 < nb; g0 += 8) {
        const int n = nb - g0 < 8 ? nb - g0 : 8;
        uint8_t *g = dst + 272 * (int64_t)(g0 / 8);
        for (int j = 0; j < n; j++) {
            memcpy(g + 2 * j, src + 34 * (int64_t)(g0 + j), 2);
            memcpy(g + 2 * n + 32 * j, src + 34 * (int64_t)(g0 + j) + 2, 32);
        }
    }
}

static void regroup_q5_0(const uint8_t *src, int nb, uint8_t *dst) {
    for (int g0 = 0; g0 < nb; g0 += 8) {
        const int n = nb - g0 < 8 ? nb - g0 : 8;
        uint8_t *g = dst + 176 * (int64_t)(g0 / 8);
        __m256i high = _mm256_setzero_si256(), pair = _mm256_setzero_si256();
        for (int j = 0; j < n; j++) {
            const uint8_t *p = src + 22 * (int64_t)(g0 + j);
            memcpy(g + 2 * j, p, 2);
            /* values 0x10 / 0 -> bit j; nibbles -> low or high half of the pair's bytes */
            high = _mm256_or_si256(high, _mm256_sllv_epi32(_mm256_srli_epi16(fifth_bits(p + 2), 4),
                                                           _mm256_set1_epi32(j)));
            pair = _mm256_or_si256(pair, _mm256_sllv_epi32(nibbles16(p + 6), _mm256_set1_epi32(4 * (j & 1))));
            if (j & 1 || j == n - 1) {
                _mm256_storeu_si256((__m256i *)(g + 2 * n + 32 + 32 * (j / 2)), pair);
                pair = _mm256_setzero_si256();
            }
        }
        _mm256_storeu_si256((__m256i *)(g + 2 * n), high);
    }
}

/* The regrouped type of a file's type, or 0 where it runs as stored */
int qc_regrouped_type(int type) { return type == Q5_0 ? Q5_0X8 : type == Q8_0 ? Q8_0X8 : 0; }

/* Bytes per row of K values in a regrouped type */
int64_t qc_regrouped_row_bytes(int type, int K) {
    const int nb = K / 32, tail = nb % 8;
    if (type == Q8_0X8) return 34 * (int64_t)nb;
    return 176 * (int64_t)(nb / 8) + (tail ? q5x8_group_bytes(tail) : 0);
}

/* rows of the file's `type` (K values each) at src, regrouped into dst (qc_regrouped_row_bytes each) */
void qc_regroup(int type, const uint8_t *src, int64_t rows, int K, uint8_t *dst, int threads) {
    const int nb = K / 32;
    const int64_t in = small_block_bytes(type) * (int64_t)nb, out = qc_regrouped_row_bytes(qc_regrouped_type(type), K);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        if (type == Q8_0)
            regroup_q8_0(src + r * in, nb, dst + r * out);
        else
            regroup_q5_0(src + r * in, nb, dst + r * out);
    }
}

/* ------------------------------------------------------------------ dequantization
 * Embedding rows (fp32), and weights for prefill, where a bf16 GEMM on the dequantized rows beats the
 * integer dot products once there are enough activation rows to share each weight. */

INLINE __m128i to_bf16(__m256 f) { /* round to nearest even */
#if defined(__AVX512BF16__) && defined(__AVX512VL__)
    return (__m128i)_mm256_cvtneps_pbh(f);
#else
    __m256i b = _mm256_castps_si256(f);
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
    b = _mm256_srli_epi32(_mm256_add_epi32(b, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF))), 16);
    return _mm_packus_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
#endif
}

static void dequant_row(int type, const uint8_t *w, int K, void *out, int bf16) {
    const int nb = K / 32;
    FOR_EACH_CHUNK(type, w, nb, {
        uint8_t bytes[32];
        _mm256_storeu_si256((__m256i *)bytes, u);
        for (int i = 0; i < 4; i++) {
            const __m128i b8 = _mm_loadl_epi64((const __m128i *)(bytes + 8 * i));
            const __m256i v = SIGNED ? _mm256_cvtepi8_epi32(b8) : _mm256_cvtepu8_epi32(b8);
            const __m256 f = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(i < 2 ? s0 : s1)),
                                           _mm256_set1_ps(i < 2 ? b0 : b1));
            if (bf16)
                _mm_storeu_si128((__m128i *)((uint16_t *)out + 32 * blk + 8 * i), to_bf16(f));
            else
                _mm256_storeu_ps((float *)out + 32 * blk + 8 * i, f);
        }
    })
}

/* out[i, :] = row ids[i] of a [*, K] matrix, as fp32 */
void qc_get_rows(int type, const uint8_t *data, int64_t row_bytes, int K, const int64_t *ids, int64_t n, float *out,
                 int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (n > 16)
    for (int64_t i = 0; i < n; i++) dequant_row(type, data + ids[i] * row_bytes, K, out + i * K, 0);
}

/* out[rows, K] = rows row0 .. row0 + rows - 1 of concat(parts), as bf16 (bf16 = 1) or fp32 */
void qc_dequantize(const qc_part *parts, int nparts, int K, int64_t row0, int64_t rows, void *out, int bf16,
                   int threads) {
    (void)nparts;
    const size_t elem = bf16 ? 2 : 4;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < rows; i++) {
        int p = 0;
        int64_t r = row0 + i;
        while (r >= parts[p].rows) r -= parts[p++].rows;
        dequant_row(parts[p].type, parts[p].data + r * parts[p].row_bytes, K, (char *)out + i * K * elem, bf16);
    }
}

/* ------------------------------------------------------------------ attention for single-query decode */

/* e^x for x <= 0 (scores minus their maximum): 2^(x log2 e) as 2^n (exponent bits) times 2^f, |f| <= 1/2, by its
 * degree-6 Taylor polynomial (relative error ~1e-7); below -87 the result is 0. */
INLINE __m256 exp_nonpositive(__m256 x) {
    const __m256 t = _mm256_mul_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(1.4426950408889634f));
    const __m256 n = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(t, n);
    __m256 p = _mm256_set1_ps(1.5403530393381606e-4f); /* (ln 2)^k / k!, k = 6 .. 0 */
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3333558146428443e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.6181291076284772e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5504108664821580e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022650695910071e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9314718055994531e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* 8 cached values as fp32, from an fp16 (f16 = 1) or fp32 cache row */
INLINE __m256 load_kv(const void *row, int i, int f16) {
    return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)))
               : _mm256_loadu_ps((const float *)row + i);
}

/* out[b, h] = softmax(q[b, h] . K^T * scale) V over the ctx_lens[b] cache slots slots[b, :] of sequence b.
 * q, out: [B, heads, hd]; k, v: [num_slots, kv_heads, hd], fp16 (f16 = 1) or fp32, hd a multiple of 8. One task
 * per (sequence, KV head): each cached key and value is read once for all the query heads that share it. */
void qc_attention_decode(const float *q, const void *k, const void *v, const int64_t *slots, const int64_t *ctx_lens,
                         int B, int max_ctx, int heads, int kv_heads, int hd, float scale, float *out, int f16,
                         int threads) {
    const int64_t elem = f16 ? 2 : 4;
    const int groups = heads / kv_heads;
#pragma omp parallel for num_threads(threads) collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        for (int kv = 0; kv < kv_heads; kv++) {
            const int64_t n = ctx_lens[b], stride = (n + 7) / 8 * 8;
            const int64_t *sl = slots + (int64_t)b * max_ctx;
            const float *qh = q + ((int64_t)b * heads + (int64_t)kv * groups) * hd;
            float *oh = out + ((int64_t)b * heads + (int64_t)kv * groups) * hd;
            float *scores = malloc(sizeof(float) * (size_t)(groups * stride + 1));
            for (int64_t t = 0; t < n; t++) {
                const char *kp = (const char *)k + (sl[t] * kv_heads + kv) * (int64_t)hd * elem;
                for (int g = 0; g < groups; g++) {
                    __m256 acc = _mm256_setzero_ps();
                    for (int i = 0; i < hd; i += 8)
                        acc = _mm256_fmadd_ps(_mm256_loadu_ps(qh + g * hd + i), load_kv(kp, i, f16), acc);
                    scores[g * stride + t] = hsum(acc) * scale;
                }
            }
            float inv_sum[groups];
            for (int g = 0; g < groups; g++) {
                float *row = scores + g * stride, top = row[0];
                for (int64_t t = 1; t < n; t++) top = row[t] > top ? row[t] : top;
                for (int64_t t = n; t < stride; t++) row[t] = -INFINITY; /* padding: e^-inf = 0 */
                __m256 sum = _mm256_setzero_ps();
                for (int64_t t = 0; t < stride; t += 8) {
                    const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(row + t), _mm256_set1_ps(top)));
                    _mm256_storeu_ps(row + t, e);
                    sum = _mm256_add_ps(sum, e);
                }
                inv_sum[g] = 1.0f / hsum(sum);
                memset(oh + g * hd, 0, sizeof(float) * hd);
            }
            for (int64_t t = 0; t < n; t++) {
                const char *vp = (const char *)v + (sl[t] * kv_heads + kv) * (int64_t)hd * elem;
                for (int g = 0; g < groups; g++) {
                    const __m256 p = _mm256_set1_ps(scores[g * stride + t]);
                    for (int i = 0; i < hd; i += 8) {
                        float *o = oh + g * hd + i;
                        _mm256_storeu_ps(o, _mm256_fmadd_ps(p, load_kv(vp, i, f16), _mm256_loadu_ps(o)));
                    }
                }
            }
            for (int g = 0; g < groups; g++)
                for (int i = 0; i < hd; i++) oh[g * hd + i] *= inv_sum[g];
            free(scores);
        }
    }
}

/* ------------------------------------------------------------------ the small per-token operations
 * Each replaces 3-10 PyTorch ops whose dispatch costs more than their arithmetic at decode sizes. Same formulas
 * and rounding order as the PyTorch code in qwen.py / rope.py, except the sum of squares' summation order. */

/* out[r] = x[r] * (1 / sqrt(mean(x[r]^2) + eps)) * w */
void qc_rmsnorm(const float *x, const float *w, float *out, int64_t rows, int dim, float eps, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (rows > 16)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *o = out + r * dim;
        __m256 acc = _mm256_setzero_ps();
        int i = 0;
        for (; i + 8 <= dim; i += 8) {
            const __m256 v = _mm256_loadu_ps(xr + i);
            acc = _mm256_fmadd_ps(v, v, acc);
        }
        float ss = hsum(acc);
        for (; i < dim; i++) ss += xr[i] * xr[i];
        const float scale = 1.0f / sqrtf(ss / (float)dim + eps);
        for (i = 0; i < dim; i++) o[i] = w[i] * (xr[i] * scale);
    }
}

/* In place, NEOX-style rotary embedding of the first `heads` head_dim-wide groups of each row of x (row stride
 * `stride` floats): (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), cos/sin: [rows, head_dim], halves equal. */
void qc_rope(float *x, int64_t stride, int64_t rows, int heads, int hd, const float *cos, const float *sin) {
    const int half = hd / 2;
    for (int64_t r = 0; r < rows; r++) {
        const float *c = cos + r * hd, *s = sin + r * hd;
        for (int h = 0; h < heads; h++) {
            float *x1 = x + r * stride + (int64_t)h * hd, *x2 = x1 + half;
            for (int i = 0; i < half; i++) {
                const float a = x1[i], b = x2[i];
                x1[i] = a * c[i] + (-b) * s[i];
                x2[i] = b * c[half + i] + a * s[half + i];
            }
        }
    }
}

/* out[r, :] = silu(gate_up[r, :n]) * gate_up[r, n:], silu(g) = g * sigmoid(g) */
void qc_silu_mul(const float *gate_up, float *out, int64_t rows, int n, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (rows > 4)
    for (int64_t r = 0; r < rows; r++) {
        const float *g = gate_up + r * 2 * (int64_t)n, *u = g + n;
        float *o = out + r * (int64_t)n;
        int i = 0;
        const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
        for (; i + 8 <= n; i += 8) {
            const __m256 x = _mm256_loadu_ps(g + i);
            const __m256 e = exp_nonpositive(_mm256_or_ps(x, sign)); /* e^-|x| */
            const __m256 inv = _mm256_div_ps(one, _mm256_add_ps(one, e));
            const __m256 nonneg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ);
            const __m256 sig = _mm256_blendv_ps(_mm256_mul_ps(e, inv), inv, nonneg);
            _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_mul_ps(x, sig), _mm256_loadu_ps(u + i)));
        }
        for (; i < n; i++) o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
}

/* ------------------------------------------------------------------ a whole decode step's decoder layers
 * The same kernels in the same order as the PyTorch modules (qwen.py's DecoderLayer with GGUFLinear layers), in
 * one call: at decode sizes the Python and dispatch around ~10 kernel calls per layer cost ~150 us per layer. */

typedef struct {
    const qc_part *qkv, *o, *gate_up, *down; /* each a run of parts (see qc_matmul) */
    int32_t qkv_parts, o_parts, gate_up_parts, down_parts;
    const float *qkv_bias, *o_bias; /* or NULL */
    const float *norm1, *norm2;     /* RMSNorm weights before attention and before the MLP */
    void *k_cache, *v_cache;        /* [num_slots, kv_heads, hd], fp16 or fp32 */
} qc_layer;

/* n values into a cache at element offset `at`: fp16 rounded to nearest even (as torch's .to(float16)), or fp32 */
static void store_kv(void *cache, int64_t at, const float *x, int n, int f16) {
    if (!f16) {
        memcpy((float *)cache + at, x, sizeof(float) * n);
        return;
    }
    uint16_t *out = (uint16_t *)cache + at;
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) out[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

/* x [M, hidden]: one new token per sequence, updated in place through every layer (the residual stream).
 * cos, sin: [M, hd]; slot_mapping [M]: where each token's K/V go; slots [M, max_ctx], ctx_lens [M]: each sequence's
 * cache slots, the new token included. */
void qc_decode_layers(const qc_layer *layers, int n_layers, float *x, int M, int hidden, int heads, int kv_heads,
                      int hd, int inter, float eps, float scale, const float *cos, const float *sin,
                      const int64_t *slot_mapping, const int64_t *slots, const int64_t *ctx_lens, int max_ctx,
                      int kv_f16, int threads) {
    const int q = heads * hd, kv = kv_heads * hd, width = q + 2 * kv;
    float *h = malloc(sizeof(float) * (size_t)M * hidden), *qkv = malloc(sizeof(float) * (size_t)M * width);
    float *qs = malloc(sizeof(float) * (size_t)M * q), *att = malloc(sizeof(float) * (size_t)M * q);
    float *out = malloc(sizeof(float) * (size_t)M * hidden), *gu = malloc(sizeof(float) * (size_t)M * 2 * inter);
    float *act = malloc(sizeof(float) * (size_t)M * inter);
    for (int l = 0; l < n_layers; l++) {
        const qc_layer *L = layers + l;
        qc_rmsnorm(x, L->norm1, h, M, hidden, eps, threads);
        qc_matmul(L->qkv, L->qkv_parts, hidden, h, M, qkv, width, threads);
        if (L->qkv_bias)
            for (int m = 0; m < M; m++)
                for (int i = 0; i < width; i++) qkv[(int64_t)m * width + i] += L->qkv_bias[i];
        qc_rope(qkv, width, M, heads + kv_heads, hd, cos, sin);
        for (int m = 0; m < M; m++) {
            const float *row = qkv + (int64_t)m * width;
            memcpy(qs + (int64_t)m * q, row, sizeof(float) * q);
            store_kv(L->k_cache, slot_mapping[m] * kv, row + q, kv, kv_f16);
            store_kv(L->v_cache, slot_mapping[m] * kv, row + q + kv, kv, kv_f16);
        }
        qc_attention_decode(qs, L->k_cache, L->v_cache, slots, ctx_lens, M, max_ctx, heads, kv_heads, hd, scale, att,
                            kv_f16, threads);
        qc_matmul(L->o, L->o_parts, q, att, M, out, hidden, threads);
        for (int64_t i = 0; i < (int64_t)M * hidden; i++) x[i] += L->o_bias ? out[i] + L->o_bias[i % hidden] : out[i];
        qc_rmsnorm(x, L->norm2, h, M, hidden, eps, threads);
        qc_matmul(L->gate_up, L->gate_up_parts, hidden, h, M, gu, 2 * inter, threads);
        qc_silu_mul(gu, act, M, inter, threads);
        qc_matmul(L->down, L->down_parts, inter, act, M, out, hidden, threads);
        for (int64_t i = 0; i < (int64_t)M * hidden; i++) x[i] += out[i];
    }
    free(h), free(qkv), free(qs), free(att), free(out), free(gu), free(act);
}
