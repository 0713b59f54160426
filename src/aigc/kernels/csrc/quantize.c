/* Quantization of float rows into the GGUF block formats (plain C; runs once per load or convert).
 *
 * The 32-formats follow ggml's reference quantizers. The K-formats use a simpler search than
 * llama.cpp's (per sub-block min/max range, then 6-bit or 8-bit scales relative to the super-block)
 * with one refinement pass that re-fits each sub-block's scale to its rounded codes; the bytes are
 * the standard layout, so llama.cpp and the gguf package read them. */
#include <math.h>
#include <string.h>

#include "aigc_kernels.h"
#include "f16.h"

static uint16_t to_f16(float f) { return f32_to_f16_sw(f); }

static float from_f16(uint16_t h) { return f16_to_f32_sw(h); }

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

static int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* ---- 32-element formats ------------------------------------------------------------------------ */

static void q_block32(int type, const float *x, uint8_t *b) {
    float amax = 0, vmax = 0, mn = x[0], mx = x[0];
    for (int i = 0; i < 32; i++) {
        if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); vmax = x[i]; }
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    switch (type) {
    case T_Q8_0: {
        float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        put16(b, to_f16(d));
        for (int i = 0; i < 32; i++) b[2 + i] = (uint8_t)(int8_t)clampi((int)roundf(x[i] * id), -127, 127);
        return;
    }
    case T_Q4_0: case T_Q5_0: {
        int q5 = type == T_Q5_0, levels = q5 ? 16 : 8, top = q5 ? 31 : 15;
        float d = vmax / (float)-levels, id = d ? 1.0f / d : 0.0f;
        put16(b, to_f16(d));
        uint8_t *qs = b + (q5 ? 6 : 2);
        uint32_t qh = 0;
        for (int i = 0; i < 16; i++) {
            int a = clampi((int)(x[i] * id + levels + 0.5f), 0, top);
            int c = clampi((int)(x[i + 16] * id + levels + 0.5f), 0, top);
            qs[i] = (uint8_t)((a & 0xF) | ((c & 0xF) << 4));
            qh |= (uint32_t)((a >> 4) & 1) << i;
            qh |= (uint32_t)((c >> 4) & 1) << (i + 16);
        }
        if (q5) memcpy(b + 2, &qh, 4);
        return;
    }
    case T_Q4_1: case T_Q5_1: {
        int q5 = type == T_Q5_1, top = q5 ? 31 : 15;
        float d = (mx - mn) / (float)top, id = d ? 1.0f / d : 0.0f;
        put16(b, to_f16(d));
        put16(b + 2, to_f16(mn));
        uint8_t *qs = b + (q5 ? 8 : 4);
        uint32_t qh = 0;
        for (int i = 0; i < 16; i++) {
            int a = clampi((int)((x[i] - mn) * id + 0.5f), 0, top);
            int c = clampi((int)((x[i + 16] - mn) * id + 0.5f), 0, top);
            qs[i] = (uint8_t)((a & 0xF) | ((c & 0xF) << 4));
            qh |= (uint32_t)((a >> 4) & 1) << i;
            qh |= (uint32_t)((c >> 4) & 1) << (i + 16);
        }
        if (q5) memcpy(b + 4, &qh, 4);
        return;
    }
    default: return;
    }
}

/* ---- K-formats ---------------------------------------------------------------------------------- */

/* Fit w ~ scale*q - min (q in 0..top) on n values: min/max start, then least squares on the codes. */
static void fit_min_scale(const float *x, int n, int top, float *scale, float *minv) {
    float mn = x[0], mx = x[0];
    for (int i = 1; i < n; i++) { mn = x[i] < mn ? x[i] : mn; mx = x[i] > mx ? x[i] : mx; }
    if (mn > 0) mn = 0;
    float s = (mx - mn) / (float)top;
    if (s <= 0) { *scale = 0; *minv = -mn; return; }
    for (int it = 0; it < 2; it++) { /* refit scale and offset to the chosen codes */
        float sq = 0, sqq = 0, sx = 0, sxq = 0;
        for (int i = 0; i < n; i++) {
            int q = clampi((int)lroundf((x[i] - mn) / s), 0, top);
            sq += q; sqq += (float)q * q; sx += x[i]; sxq += x[i] * q;
        }
        float det = n * sqq - sq * sq;
        if (det <= 0) break;
        float ns = (n * sxq - sq * sx) / det, nm = (sx - ns * sq) / n;
        if (ns <= 0 || nm > 0) break;
        s = ns;
        mn = nm;
    }
    *scale = s;
    *minv = -mn; /* stored positive: w = scale*q - minv */
}

static void put_scale_min_k4(uint8_t *sc12, int j, int sc, int m) {
    if (j < 4) {
        sc12[j] = (uint8_t)((sc12[j] & 0xC0) | (sc & 63));
        sc12[j + 4] = (uint8_t)((sc12[j + 4] & 0xC0) | (m & 63));
    } else {
        sc12[j + 4] = (uint8_t)((sc & 0xF) | ((m & 0xF) << 4));
        sc12[j - 4] = (uint8_t)((sc12[j - 4] & 0x3F) | ((sc >> 4) << 6));
        sc12[j] = (uint8_t)((sc12[j] & 0x3F) | ((m >> 4) << 6));
    }
}

static void q_superblock_k(int type, const float *x, uint8_t *b) {
    if (type == T_Q6_K) {
        float scales[16], amax_s = 0;
        for (int j = 0; j < 16; j++) {
            float amax = 0, vmax = 0;
            for (int i = 0; i < 16; i++)
                if (fabsf(x[16 * j + i]) > amax) { amax = fabsf(x[16 * j + i]); vmax = x[16 * j + i]; }
            scales[j] = vmax / -32.0f;
            if (fabsf(scales[j]) > amax_s) amax_s = fabsf(scales[j]);
        }
        memset(b, 0, 210);
        float d = amax_s / 127.0f, id = d ? 1.0f / d : 0.0f;
        put16(b + 208, to_f16(d));
        d = from_f16(to_f16(d));
        int8_t *sc = (int8_t *)(b + 192);
        uint8_t L[256];
        for (int j = 0; j < 16; j++) {
            sc[j] = (int8_t)clampi((int)lroundf(scales[j] * id), -128, 127);
            float dj = d * sc[j], idj = dj ? 1.0f / dj : 0.0f;
            for (int i = 0; i < 16; i++) L[16 * j + i] = (uint8_t)clampi((int)lroundf(x[16 * j + i] * idj) + 32, 0, 63);
        }
        uint8_t *ql = b, *qh = b + 128;
        for (int n = 0; n < 2; n++) {
            for (int l = 0; l < 32; l++) {
                const uint8_t *Ln = L + 128 * n;
                uint8_t q1 = Ln[l], q2 = Ln[l + 32], q3 = Ln[l + 64], q4 = Ln[l + 96];
                ql[64 * n + l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[64 * n + l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[32 * n + l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
        return;
    }
    int q5 = type == T_Q5_K, top = q5 ? 31 : 15;
    float scales[8], mins[8], max_s = 0, max_m = 0;
    for (int j = 0; j < 8; j++) {
        fit_min_scale(x + 32 * j, 32, top, &scales[j], &mins[j]);
        max_s = scales[j] > max_s ? scales[j] : max_s;
        max_m = mins[j] > max_m ? mins[j] : max_m;
    }
    memset(b, 0, q5 ? 176 : 144);
    float d = max_s / 63.0f, dmin = max_m / 63.0f;
    put16(b, to_f16(d));
    put16(b + 2, to_f16(dmin));
    d = from_f16(to_f16(d));
    dmin = from_f16(to_f16(dmin));
    uint8_t *sc12 = b + 4, *qh = b + 16, *qs = b + (q5 ? 48 : 16);
    for (int j = 0; j < 8; j++) {
        int sc = d ? clampi((int)lroundf(scales[j] / d), 0, 63) : 0;
        int m = dmin ? clampi((int)lroundf(mins[j] / dmin), 0, 63) : 0;
        put_scale_min_k4(sc12, j, sc, m);
        float dj = d * sc, mj = dmin * m;
        for (int l = 0; l < 32; l++) {
            int q = dj ? clampi((int)lroundf((x[32 * j + l] + mj) / dj), 0, top) : 0;
            int c = j / 2;
            if (j & 1) qs[32 * c + l] |= (uint8_t)((q & 0xF) << 4);
            else qs[32 * c + l] |= (uint8_t)(q & 0xF);
            if (q5 && (q & 16)) qh[l] |= (uint8_t)(1 << j);
        }
    }
}

/* Quantize `rows` rows of `cols` floats into `out` (aigc_row_bytes(type, cols) bytes per row). */
int aigc_quantize(int type, const float *x, int64_t rows, int64_t cols, uint8_t *out) {
    int64_t rb = aigc_row_bytes(type, cols);
    if (rb == 0 || type == T_F32 || type == T_F16 || type == T_BF16) return -1;
    int k = type == T_Q4_K || type == T_Q5_K || type == T_Q6_K;
    int64_t bs = k ? QK_K : QK, bb = rb / (cols / bs);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols / bs; i++) {
            const float *xb = x + r * cols + i * bs;
            uint8_t *ob = out + r * rb + i * bb;
            if (k) q_superblock_k(type, xb, ob);
            else q_block32(type, xb, ob);
        }
    }
    return 0;
}
