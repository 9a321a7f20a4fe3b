/*
 * hpatorch: a small C ABI over libtorch's C++ API for the hpa training backend.
 *
 * The Go package internal/model/torch loads libhpatorch.so with dlopen, so the hpa binary never links
 * libtorch. Every function that can fail returns a status (0 ok, -1 error) or a NULL handle; the reason
 * is then in hpat_last_error(), a thread-local string valid until the next failing call on that thread.
 * No C++ exception crosses this boundary.
 *
 * The architecture travels as flattened int64s (hpat_model_new) that the Go side resolves from its Spec:
 *
 *   spec[0..5]  in_chans, num_classes, stem (0 = maxpool, 1 = conv), stem_width, features, num_blocks
 *   then per block 9 values:
 *               stage (1-based), index in stage, in, width, out, stride, groups, se_channels, downsample
 *
 * Tensors are named exactly as timm's state dict (conv1.weight, layer1.0.se.fc1.bias, ...), in
 * state-dict order. Kinds: 0 trainable parameter, 1 BN running_mean, 2 BN running_var,
 * 3 BN num_batches_tracked (int64 scalar); all others are float32.
 */
#ifndef HPATORCH_H
#define HPATORCH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#if defined(HPAT_BUILD) && defined(__GNUC__)
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */
#endif

#define HPAT_ABI_VERSION 3
#define HPAT_SPEC_HEADER 6
#define HPAT_SPEC_BLOCK 9
#define HPAT_MAX_DIMS 8

enum hpat_loss { HPAT_LOSS_BCE = 0, HPAT_LOSS_FOCAL = 1, HPAT_LOSS_SOFT_F1 = 2 };

typedef struct hpat_model hpat_model;
typedef struct hpat_sgd hpat_sgd;

int hpat_abi_version(void);
/* "hpatorch 1 (libtorch 1.13.0)" */
const char *hpat_version(void);
const char *hpat_last_error(void);

int hpat_set_num_threads(int n);
int hpat_get_num_threads(void);
int hpat_manual_seed(uint64_t seed);
int hpat_cuda_available(void);
int hpat_cuda_device_count(void);

/* device: "cpu", "cuda", "cuda:N". The weights are initialized on the CPU from seed (timm's scheme:
 * kaiming-normal fan_out convolutions, BN 1/0, last BN of each block zero) and then moved. */
hpat_model *hpat_model_new(const int64_t *spec, int64_t spec_len, const char *device, uint64_t seed);
void hpat_model_free(hpat_model *m);
int64_t hpat_model_num_tensors(hpat_model *m);
const char *hpat_model_tensor_name(hpat_model *m, int64_t i); /* NULL when out of range */
/* kind, ndim and up to HPAT_MAX_DIMS dims of tensor i. */
int hpat_model_tensor_info(hpat_model *m, int64_t i, int64_t *kind, int64_t *ndim, int64_t *shape);
int64_t hpat_model_num_classes(hpat_model *m);
/* Copies tensor `name` to/from a host buffer of exactly nbytes (numel*4, or 8 for int64 scalars). */
int hpat_model_get_tensor(hpat_model *m, const char *name, void *dst, int64_t nbytes);
int hpat_model_set_tensor(hpat_model *m, const char *name, const void *src, int64_t nbytes);
/* x: NCHW float32; out: n*num_classes logits. train != 0 runs BN in training mode (batch statistics,
 * running stats updated); no gradients either way. */
int hpat_model_forward(hpat_model *m, const float *x, int64_t n, int64_t c, int64_t h, int64_t w,
                       int train, float *out);

hpat_sgd *hpat_sgd_new(hpat_model *m, double lr, double momentum, double weight_decay, int nesterov);
void hpat_sgd_free(hpat_sgd *o);
int hpat_sgd_set_lr(hpat_sgd *o, double lr);
/* Momentum buffer of parameter `name` (checkpointing, so a resumed run continues exactly).
 * get: copies exactly nbytes (numel*4) into dst and returns 1, or returns 0 when the optimizer has no
 * buffer for it yet (before its first step), or -1 on error. set: installs a copy as the buffer. */
int hpat_sgd_get_momentum(hpat_sgd *o, const char *name, float *dst, int64_t nbytes);
int hpat_sgd_set_momentum(hpat_sgd *o, const char *name, const float *src, int64_t nbytes);

/* AdamW (decoupled weight decay) as the alternative optimizer; the handle type is shared with SGD and
 * works with hpat_sgd_set_lr, hpat_sgd_free and hpat_train_step. */
hpat_sgd *hpat_adamw_new(hpat_model *m, double lr, double beta1, double beta2, double eps, double weight_decay);
int hpat_optim_is_adamw(hpat_sgd *o);
/* Per-parameter optimizer state by slot, for checkpoints. SGD: slot 0 = momentum buffer. AdamW:
 * slot 0 = exp_avg, 1 = exp_avg_sq (numel float32 each), 2 = step (one float32). get returns 1, or 0
 * when the parameter has no state yet, or -1; set creates the state when missing. */
int hpat_optim_get_state(hpat_sgd *o, const char *name, int slot, float *dst, int64_t nbytes);
int hpat_optim_set_state(hpat_sgd *o, const char *name, int slot, const float *src, int64_t nbytes);

/* One optimization step in training mode. targets: n*num_classes in [0,1]. loss_kind: enum hpat_loss;
 * gamma: focal exponent. amp != 0: bfloat16 autocast (cuda only). loss_out: the mean loss before the
 * step; logits_out (may be NULL): n*num_classes float32 logits of that forward. */
int hpat_train_step(hpat_model *m, hpat_sgd *o, const float *x, int64_t n, int64_t c, int64_t h,
                    int64_t w, const float *targets, int loss_kind, double gamma, int amp,
                    float *loss_out, float *logits_out);

#if defined(HPAT_BUILD) && defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif
