// See hpat_dl.h.
#include <dlfcn.h>
#include <string.h>

#include "hpat_dl.h"


char *hdl_err(hpat_lib *L) {
	const char *e = L->last_error();
	return strdup(e && *e ? e : "unknown error");
}

char *hdl_open(const char *path, hpat_lib *L) {
	memset(L, 0, sizeof *L);
	L->h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!L->h) return strdup(dlerror());
#define SYM(f)                                                        \
	do {                                                              \
		dlerror();                                                    \
		*(void **)(&L->f) = dlsym(L->h, "hpat_" #f);                  \
		if (!L->f) {                                                  \
			const char *e = dlerror();                                \
			return strdup(e ? e : "missing symbol hpat_" #f);         \
		}                                                             \
	} while (0)
	SYM(abi_version); SYM(version); SYM(last_error); SYM(set_num_threads); SYM(get_num_threads);
	SYM(manual_seed); SYM(cuda_available); SYM(cuda_device_count); SYM(model_new); SYM(model_free);
	SYM(model_num_tensors); SYM(model_tensor_name); SYM(model_tensor_info); SYM(model_num_classes);
	SYM(model_get_tensor); SYM(model_set_tensor); SYM(model_forward); SYM(sgd_new); SYM(sgd_free);
	SYM(sgd_set_lr); SYM(sgd_get_momentum); SYM(sgd_set_momentum);
	SYM(adamw_new); SYM(optim_get_state); SYM(optim_set_state); SYM(train_step);
#undef SYM
	return NULL;
}

int hdl_abi_version(hpat_lib *L) { return L->abi_version(); }
const char *hdl_version(hpat_lib *L) { return L->version(); }
int hdl_cuda_available(hpat_lib *L) { return L->cuda_available(); }
int hdl_cuda_device_count(hpat_lib *L) { return L->cuda_device_count(); }
int hdl_get_num_threads(hpat_lib *L) { return L->get_num_threads(); }

int hdl_set_num_threads(hpat_lib *L, int n, char **err) {
	int rc = L->set_num_threads(n);
	if (rc) *err = hdl_err(L);
	return rc;
}
int hdl_manual_seed(hpat_lib *L, uint64_t s, char **err) {
	int rc = L->manual_seed(s);
	if (rc) *err = hdl_err(L);
	return rc;
}
hpat_model *hdl_model_new(hpat_lib *L, const int64_t *spec, int64_t n, const char *dev, uint64_t seed, char **err) {
	hpat_model *m = L->model_new(spec, n, dev, seed);
	if (!m) *err = hdl_err(L);
	return m;
}
void hdl_model_free(hpat_lib *L, hpat_model *m) { L->model_free(m); }
int64_t hdl_model_num_tensors(hpat_lib *L, hpat_model *m) { return L->model_num_tensors(m); }
int64_t hdl_model_num_classes(hpat_lib *L, hpat_model *m) { return L->model_num_classes(m); }
const char *hdl_model_tensor_name(hpat_lib *L, hpat_model *m, int64_t i) { return L->model_tensor_name(m, i); }
int hdl_model_tensor_info(hpat_lib *L, hpat_model *m, int64_t i, int64_t *kind, int64_t *ndim, int64_t *shape, char **err) {
	int rc = L->model_tensor_info(m, i, kind, ndim, shape);
	if (rc) *err = hdl_err(L);
	return rc;
}
int hdl_model_get_tensor(hpat_lib *L, hpat_model *m, const char *name, void *dst, int64_t nb, char **err) {
	int rc = L->model_get_tensor(m, name, dst, nb);
	if (rc) *err = hdl_err(L);
	return rc;
}
int hdl_model_set_tensor(hpat_lib *L, hpat_model *m, const char *name, const void *src, int64_t nb, char **err) {
	int rc = L->model_set_tensor(m, name, src, nb);
	if (rc) *err = hdl_err(L);
	return rc;
}
int hdl_model_forward(hpat_lib *L, hpat_model *m, const float *x, int64_t n, int64_t c, int64_t h, int64_t w, int train, float *out, char **err) {
	int rc = L->model_forward(m, x, n, c, h, w, train, out);
	if (rc) *err = hdl_err(L);
	return rc;
}
hpat_sgd *hdl_sgd_new(hpat_lib *L, hpat_model *m, double lr, double mom, double wd, int nest, char **err) {
	hpat_sgd *o = L->sgd_new(m, lr, mom, wd, nest);
	if (!o) *err = hdl_err(L);
	return o;
}
void hdl_sgd_free(hpat_lib *L, hpat_sgd *o) { L->sgd_free(o); }
int hdl_sgd_set_lr(hpat_lib *L, hpat_sgd *o, double lr, char **err) {
	int rc = L->sgd_set_lr(o, lr);
	if (rc) *err = hdl_err(L);
	return rc;
}
int hdl_sgd_get_momentum(hpat_lib *L, hpat_sgd *o, const char *name, float *dst, int64_t nb, char **err) {
	int rc = L->sgd_get_momentum(o, name, dst, nb);
	if (rc < 0) *err = hdl_err(L);
	return rc;
}
int hdl_sgd_set_momentum(hpat_lib *L, hpat_sgd *o, const char *name, const float *src, int64_t nb, char **err) {
	int rc = L->sgd_set_momentum(o, name, src, nb);
	if (rc) *err = hdl_err(L);
	return rc;
}
hpat_sgd *hdl_adamw_new(hpat_lib *L, hpat_model *m, double lr, double b1, double b2, double eps, double wd, char **err) {
	hpat_sgd *o = L->adamw_new(m, lr, b1, b2, eps, wd);
	if (o == NULL) *err = hdl_err(L);
	return o;
}
int hdl_optim_get_state(hpat_lib *L, hpat_sgd *o, const char *name, int slot, float *dst, int64_t nb, char **err) {
	int rc = L->optim_get_state(o, name, slot, dst, nb);
	if (rc < 0) *err = hdl_err(L);
	return rc;
}
int hdl_optim_set_state(hpat_lib *L, hpat_sgd *o, const char *name, int slot, const float *src, int64_t nb, char **err) {
	int rc = L->optim_set_state(o, name, slot, src, nb);
	if (rc) *err = hdl_err(L);
	return rc;
}
int hdl_train_step(hpat_lib *L, hpat_model *m, hpat_sgd *o, const float *x, int64_t n, int64_t c, int64_t h, int64_t w,
                           const float *y, int loss, double gamma, int amp, float *loss_out, float *logits, char **err) {
	int rc = L->train_step(m, o, x, n, c, h, w, y, loss, gamma, amp, loss_out, logits);
	if (rc) *err = hdl_err(L);
	return rc;
}
