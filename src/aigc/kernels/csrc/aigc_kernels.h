/* aigc CPU kernels: shared declarations.
 *
 * Weights stay in the block formats llama.cpp stores in GGUF files (ggml type ids below); the
 * kernels read them as they are. Integer formats meet activations quantized on the fly to int16
 * blocks (per 32, or per 256-weight super-block for the K-formats; int8 blocks as llama.cpp only
 * when asked), or dequantized panels when many rows share the weights; float formats (F32/F16/BF16)
 * multiply with float activations.
 *
 * `kernels_isa.c` is compiled once per instruction set (portable, AVX2, AVX-512) into functions with
 * a suffix; `runtime.c` picks one set at load time (cpuid, or AIGC_KERNEL_ISA) and owns the thread
 * pool. Everything Python calls is declared at the end of this file.
 */
#ifndef AIGC_KERNELS_H
#define AIGC_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* ggml type ids (the numbers GGUF files use) */
enum {
    T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q4_1 = 3, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8,
    T_Q2_K = 10, T_Q3_K = 11, T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14, T_BF16 = 30,
};

#define QK 32     /* elements per block of the 32-formats and of quantized activations */
#define QK_K 256  /* elements per super-block of the K-formats */

/* Activations quantized to int8: per block of 32, a scale d and s = d * sum(q). */
typedef struct {
    const int8_t *q;
    const float *d;
    const float *s;
} act_q8;

/* Activations quantized to int16 (near-exact): per block of 32, a scale d and s = d * sum(q). */
typedef struct {
    const int16_t *q;
    const float *d;
    const float *s;
} act_q16;

/* Activations for the K-formats: int16 with one scale per super-block of 256, and the integer sum
 * of every block of 32 (for the formats' minimum term). */
typedef struct {
    const int16_t *q;
    const float *d;
    const int32_t *bsum;
} act_q16k;

/* One ISA's kernels. */
typedef struct {
    const char *name;
    /* out[r] = dot(weight row w, activation row r) for r < R (R <= 4); x is act_q8* or const float** */
    void (*dot_rows)(int type, const uint8_t *w, int64_t K, const void *x, int R, float *out);
    /* integer weights with float activations; xsum[r] = per-32-block sums of activation row r */
    void (*dot_rows_fx)(int type, const uint8_t *w, int64_t K, const float *const *x, const float *const *xsum,
                        int R, float *out);
    /* integer weights with int16 activations; NULL where the ISA has no fast path for it */
    void (*dot_rows_q16)(int type, const uint8_t *w, int64_t K, const act_q16 *x, int R, float *out);
    void (*quantize_act16)(const float *x, int64_t K, int levels, int16_t *q, float *d, float *s);
    void (*quantize_act)(const float *x, int64_t K, int8_t *q, float *d, float *s);
    void (*dequant_row)(int type, const uint8_t *w, int64_t K, float *out);
    void (*rmsnorm)(const float *x, const float *w, int64_t n, float eps, float *out);
    /* nq query heads (consecutive) that share one kv head; scores: nq * len floats of scratch;
     * softcap > 0: scores become softcap * tanh(score / softcap) before the softmax (Gemma 2) */
    void (*attention)(const float *q, int nq, const void *k, const void *v, int kv_f16, int64_t pos_stride,
                      int64_t len, int hd, float scale, float softcap, float *scores, float *out);
    void (*silu_mul)(const float *g, const float *u, int64_t n, float *out);
    void (*store_kv)(const float *src, void *dst, int kv_f16, int n);
    /* many activation rows: gemm_nc weight rows dequantized into a [K][gemm_nc] float panel */
    int gemm_nc;
    void (*gemm_pack)(const float *rows, int64_t K, float *panel); /* rows: [gemm_nc][K] */
    void (*gemm_panel)(const float *panel, int64_t K, const float *x, int64_t M, float *c); /* c: [M][gemm_nc] */
    /* Q4_K, Q5_K, Q6_K weights with act_q16k activations; NULL where the ISA has no fast path */
    void (*dot_rows_k16)(int type, const uint8_t *w, int64_t K, const act_q16k *x, int R, float *out);
    void (*quantize_act16k)(const float *x, int64_t K, int16_t *q, float *d, int32_t *bsum);
    /* many rows, integer formats: int16 panels [K/32][16][gemm_nc][2] with scales [K/32][gemm_nc]
     * against int16 activation blocks; NULL where the ISA has no fast path (then float panels) */
    void (*gemm_pack16)(const float *rows, int64_t K, int16_t *panel, float *scales);
    void (*gemm_panel16)(const int16_t *panel, const float *scales, int64_t K, const act_q16 *x, int64_t M,
                         float *c);
    int gemm16_levels; /* activation levels the int16 panels take (|q| <= levels) */
    int64_t (*argmax_lse)(const float *x, int64_t n, float *lse);
    void (*gelu_mul)(const float *g, const float *u, int64_t n, float *out); /* gelu_tanh(g) * u */
} isa_kernels;

extern const isa_kernels kernels_portable;
#if defined(__x86_64__)
extern const isa_kernels kernels_avx2;
extern const isa_kernels kernels_avx512;
#endif

/* bytes of one row of `cols` elements in format `type`; 0 if unsupported or misaligned */
int64_t aigc_row_bytes(int type, int64_t cols);

/* ---- what Python calls (ctypes) --------------------------------------------------------------- */

typedef struct {
    const void *data;
    int32_t type;
    int64_t rows, cols;
} aigc_weight;

typedef struct {
    aigc_weight qkv[3];
    int32_t n_qkv;
    const float *qkv_bias;
    aigc_weight o;
    const float *o_bias;
    aigc_weight gate_up[2];
    int32_t n_gate_up;
    const float *gate_up_bias;
    aigc_weight down;
    const float *down_bias;
    const float *attn_norm;
    const float *mlp_norm;
    void *k_cache; /* [slots, n_kv, capacity, head_dim] */
    void *v_cache;
    const float *q_norm, *k_norm;              /* per-head RMSNorm of q and k before rotation, or NULL */
    const float *post_attn_norm, *post_mlp_norm; /* norms of the sub-layer outputs (Gemma), or NULL */
    int32_t window;                            /* > 0: a query sees only the `window` latest positions */
    int32_t local_rope;                        /* 1: rotate with the model's inv_freq_local */
} aigc_layer;

typedef struct {
    int32_t n_layers, hidden, n_heads, n_kv, head_dim, inter, vocab;
    float eps;
    const float *inv_freq; /* [head_dim / 2] */
    aigc_weight embed;
    aigc_weight lm_head;
    const float *final_norm;
    aigc_layer *layers;
    int32_t kv_f16;            /* cache element type: 1 = f16, 0 = f32 */
    int64_t kv_slot_stride;    /* elements between slots */
    int64_t kv_head_stride;    /* elements between kv heads (= capacity * head_dim) */
    int64_t kv_capacity;       /* positions per slot */
    const float *inv_freq_local; /* second rotary table (Gemma 3's sliding layers), or NULL */
    float embed_scale;         /* != 0: embeddings times this (Gemma) */
    float attn_scale;          /* != 0: query scale instead of 1/sqrt(head_dim) */
    float attn_softcap;        /* > 0: attention score capping */
    float final_softcap;       /* > 0: logit capping */
    int32_t act;               /* the MLP gate: 0 = SiLU, 1 = GELU (tanh) */
} aigc_model;

const char *aigc_isa_name(void);
int aigc_set_isa(const char *name);
int aigc_num_threads(void);
void aigc_set_num_threads(int n);
void aigc_set_int8_min_rows(int64_t rows);
void aigc_set_gemm_min_rows(int64_t rows);
/* rows of logits: out_ids[r] = argmax of row r, out_lse[r] = its log-sum-exp */
void aigc_argmax_lse(const float *x, int64_t rows, int64_t n, int64_t *out_ids, float *out_lse);
void aigc_set_activation_mode(int int16);
int aigc_matmul(const aigc_weight *parts, int n_parts, const float *x, int64_t M, float *y,
                const float *bias, int accumulate);
int aigc_dequantize(const aigc_weight *w, float *out);
int aigc_quantize(int type, const float *x, int64_t rows, int64_t cols, uint8_t *out);
/* n tokens; the first n_decode are decode tokens (their rows never depend on the others: see
 * matmul_locked), the rest a prefill chunk */
int aigc_forward(const aigc_model *m, int64_t n, int64_t n_decode, const int32_t *ids, const int32_t *pos,
                 const int32_t *slot, int64_t n_out, const int32_t *out_idx, float *logits,
                 float *hidden_out);

#endif
