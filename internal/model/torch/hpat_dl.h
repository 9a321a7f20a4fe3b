// Dynamic loading of libhpatorch.so (csrc/hpatorch/hpatorch.h): a table of the shim's entry
// points filled by dlsym, and wrappers that fetch the shim's thread-local error inside the same C call
// (so on the same OS thread) and return a malloc'ed copy for Go to free.
#ifndef HPA_TORCH_DL_H
#define HPA_TORCH_DL_H

#include <stdint.h>
#include <stdlib.h>

#include <stdint.h>
#include <stdlib.h>

typedef struct hpat_model hpat_model;
typedef struct hpat_sgd hpat_sgd;

typedef struct {
	void *h;
	int (*abi_version)(void);
	const char *(*version)(void);
	const char *(*last_error)(void);
	int (*set_num_threads)(int);
	int (*get_num_threads)(void);
	int (*manual_seed)(uint64_t);
	int (*cuda_available)(void);
	int (*cuda_device_count)(void);
	hpat_model *(*model_new)(const int64_t *, int64_t, const char *, uint64_t);
	void (*model_free)(hpat_model *);
	int64_t (*model_num_tensors)(hpat_model *);
	const char *(*model_tensor_name)(hpat_model *, int64_t);
	int (*model_tensor_info)(hpat_model *, int64_t, int64_t *, int64_t *, int64_t *);
	int64_t (*model_num_classes)(hpat_model *);
	int (*model_get_tensor)(hpat_model *, const char *, void *, int64_t);
	int (*model_set_tensor)(hpat_model *, const char *, const void *, int64_t);
	int (*model_forward)(hpat_model *, const float *, int64_t, int64_t, int64_t, int64_t, int, float *);
	hpat_sgd *(*sgd_new)(hpat_model *, double, double, double, int);
	void (*sgd_free)(hpat_sgd *);
	int (*sgd_set_lr)(hpat_sgd *, double);
	int (*sgd_get_momentum)(hpat_sgd *, const char *, float *, int64_t);
	int (*sgd_set_momentum)(hpat_sgd *, const char *, const float *, int64_t);
	hpat_sgd *(*adamw_new)(hpat_model *, double, double, double, double, double);
	int (*optim_get_state)(hpat_sgd *, const char *, int, float *, int64_t);
	int (*optim_set_state)(hpat_sgd *, const char *, int, const float *, int64_t);
	int (*train_step)(hpat_model *, hpat_sgd *, const float *, int64_t, int64_t, int64_t, int64_t,
	                  const float *, int, double, int, float *, float *);
} hpat_lib;

char *hdl_err(hpat_lib *L);
char *hdl_open(const char *path, hpat_lib *L);
int hdl_abi_version(hpat_lib *L);
const char *hdl_version(hpat_lib *L);
int hdl_cuda_available(hpat_lib *L);
int hdl_cuda_device_count(hpat_lib *L);
int hdl_get_num_threads(hpat_lib *L);
int hdl_set_num_threads(hpat_lib *L, int n, char **err);
int hdl_manual_seed(hpat_lib *L, uint64_t s, char **err);
hpat_model *hdl_model_new(hpat_lib *L, const int64_t *spec, int64_t n, const char *dev, uint64_t seed, char **err);
void hdl_model_free(hpat_lib *L, hpat_model *m);
int64_t hdl_model_num_tensors(hpat_lib *L, hpat_model *m);
int64_t hdl_model_num_classes(hpat_lib *L, hpat_model *m);
const char *hdl_model_tensor_name(hpat_lib *L, hpat_model *m, int64_t i);
int hdl_model_tensor_info(hpat_lib *L, hpat_model *m, int64_t i, int64_t *kind, int64_t *ndim, int64_t *shape, char **err);
int hdl_model_get_tensor(hpat_lib *L, hpat_model *m, const char *name, void *dst, int64_t nb, char **err);
int hdl_model_set_tensor(hpat_lib *L, hpat_model *m, const char *name, const void *src, int64_t nb, char **err);
int hdl_model_forward(hpat_lib *L, hpat_model *m, const float *x, int64_t n, int64_t c, int64_t h, int64_t w, int train, float *out, char **err);
hpat_sgd *hdl_sgd_new(hpat_lib *L, hpat_model *m, double lr, double mom, double wd, int nest, char **err);
void hdl_sgd_free(hpat_lib *L, hpat_sgd *o);
int hdl_sgd_set_lr(hpat_lib *L, hpat_sgd *o, double lr, char **err);
int hdl_sgd_get_momentum(hpat_lib *L, hpat_sgd *o, const char *name, float *dst, int64_t nb, char **err);
int hdl_sgd_set_momentum(hpat_lib *L, hpat_sgd *o, const char *name, const float *src, int64_t nb, char **err);
hpat_sgd *hdl_adamw_new(hpat_lib *L, hpat_model *m, double lr, double b1, double b2, double eps, double wd, char **err);
int hdl_optim_get_state(hpat_lib *L, hpat_sgd *o, const char *name, int slot, float *dst, int64_t nb, char **err);
int hdl_optim_set_state(hpat_lib *L, hpat_sgd *o, const char *name, int slot, const float *src, int64_t nb, char **err);
int hdl_train_step(hpat_lib *L, hpat_model *m, hpat_sgd *o, const float *x, int64_t n, int64_t c, int64_t h,
                   int64_t w, const float *y, int loss, double gamma, int amp, float *loss_out, float *logits,
                   char **err);
#endif
