// hpatorch: C ABI over libtorch for the hpa training backend. See hpatorch.h.
// One translation unit on purpose: compiling against libtorch is slow.
#include "hpatorch.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <sstream>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace {

thread_local std::string g_last_error;

int fail(const std::string &msg) {
  g_last_error = msg;
  return -1;
}

// The intra-op thread count asked for with hpat_set_num_threads. OpenMP keeps the count per OS thread
// (omp_set_num_threads sets the calling thread's ICV), and Go runs each cgo call on whichever OS
// thread is free: without re-applying it, a step on another thread would run OpenMP/OpenBLAS with the
// default count, summing in another order -- not reproducible. sync_threads() re-applies it on entry.
std::atomic<int> g_threads{0};
thread_local int t_threads = 0;

void sync_threads() {
  int n = g_threads.load();
  if (n > 0 && t_threads != n) {
    torch::set_num_threads(n);
    t_threads = n;
  }
}

// guard runs f, turning any exception into the thread-local error and `bad`.
template <typename T, typename F> T guard(T bad, F &&f) {
  try {
    return f();
  } catch (const c10::Error &e) {
    g_last_error = e.what_without_backtrace();
  } catch (const std::exception &e) {
    g_last_error = e.what();
  } catch (...) {
    g_last_error = "unknown C++ exception";
  }
  return bad;
}

namespace nn = torch::nn;

struct SEImpl : nn::Module {
  nn::Conv2d fc1{nullptr}, fc2{nullptr};
  SEImpl(int64_t ch, int64_t rd) {
    fc1 = register_module("fc1", nn::Conv2d(nn::Conv2dOptions(ch, rd, 1).bias(true)));
    fc2 = register_module("fc2", nn::Conv2d(nn::Conv2dOptions(rd, ch, 1).bias(true)));
  }
  torch::Tensor forward(const torch::Tensor &x) {
    auto s = x.mean({2, 3}, /*keepdim=*/true);
    s = fc2(torch::relu(fc1(s)));
    return x * torch::sigmoid(s);
  }
};
TORCH_MODULE(SE);

struct BlockSpec {
  int64_t stage, index, in, width, out, stride, groups, se, downsample;
};

nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t groups = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(k / 2).groups(groups).bias(false));
}

nn::BatchNorm2d bn(int64_t c) {
  return nn::BatchNorm2d(nn::BatchNorm2dOptions(c).eps(1e-5).momentum(0.1));
}

// timm's Bottleneck with attn_layer='se'.
struct BottleneckImpl : nn::Module {
  nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  SE se{nullptr};
  nn::Sequential downsample{nullptr};
  explicit BottleneckImpl(const BlockSpec &b) {
    conv1 = register_module("conv1", conv(b.in, b.width, 1, 1));
    bn1 = register_module("bn1", bn(b.width));
    conv2 = register_module("conv2", conv(b.width, b.width, 3, b.stride, b.groups));
    bn2 = register_module("bn2", bn(b.width));
    conv3 = register_module("conv3", conv(b.width, b.out, 1, 1));
    bn3 = register_module("bn3", bn(b.out));
    se = register_module("se", SE(b.out, b.se));
    if (b.downsample) {
      downsample = register_module("downsample", nn::Sequential(conv(b.in, b.out, 1, b.stride), bn(b.out)));
    }
  }
  torch::Tensor forward(const torch::Tensor &x) {
    auto y = torch::relu(bn1(conv1(x)));
    y = torch::relu(bn2(conv2(y)));
    y = se(bn3(conv3(y)));
    auto shortcut = downsample ? downsample->forward(x) : x;
    return torch::relu(y + shortcut);
  }
};
TORCH_MODULE(Bottleneck);

struct NetImpl : nn::Module {
  nn::Conv2d conv1{nullptr};
  nn::BatchNorm2d bn1{nullptr};
  nn::MaxPool2d pool{nullptr};
  nn::Sequential stem_conv{nullptr};
  std::vector<nn::Sequential> layers;
  nn::Linear fc{nullptr};

  NetImpl(int64_t in_chans, int64_t num_classes, bool conv_stem, int64_t stem_width, int64_t features,
          const std::vector<BlockSpec> &blocks) {
    conv1 = register_module("conv1", conv(in_chans, stem_width, 7, 2));
    bn1 = register_module("bn1", bn(stem_width));
    if (conv_stem) {
      // timm replace_stem_pool: maxpool.0 conv 3x3/2, maxpool.1 BN, maxpool.2 ReLU.
      stem_conv = register_module("maxpool", nn::Sequential(conv(stem_width, stem_width, 3, 2), bn(stem_width),
                                                            nn::ReLU()));
    } else {
      pool = register_module("maxpool", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
    }
    int64_t stage = 0;
    for (const auto &b : blocks) {
      if (b.stage != stage) {
        if (b.stage != stage + 1 || b.index != 0) {
          throw std::invalid_argument("spec: blocks out of order at stage " + std::to_string(b.stage) +
                                      " index " + std::to_string(b.index));
        }
        stage = b.stage;
        layers.push_back(register_module("layer" + std::to_string(stage), nn::Sequential()));
      }
      auto &layer = layers.back();
      if (b.index != static_cast<int64_t>(layer->size())) {
        throw std::invalid_argument("spec: block index " + std::to_string(b.index) + " out of order in stage " +
                                    std::to_string(stage));
      }
      layer->push_back(Bottleneck(b));
    }
    fc = register_module("fc", nn::Linear(features, num_classes));
  }

  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(bn1(conv1(x)));
    x = stem_conv ? stem_conv->forward(x) : pool(x);
    for (auto &l : layers) x = l->forward(x);
    x = x.mean({2, 3});
    return fc(x);
  }
};
TORCH_MODULE(Net);

struct Entry {
  std::string name;
  torch::Tensor t;
  int64_t kind;
};

int64_t kind_of(const std::string &name, bool buffer) {
  if (!buffer) return 0;
  auto ends = [&](const char *s) {
    size_t n = std::strlen(s);
    return name.size() >= n && name.compare(name.size() - n, n, s) == 0;
  };
  if (ends("running_mean")) return 1;
  if (ends("running_var")) return 2;
  if (ends("num_batches_tracked")) return 3;
  return 0;
}

std::vector<BlockSpec> parse_blocks(const int64_t *spec, int64_t len) {
  if (spec == nullptr || len < HPAT_SPEC_HEADER) throw std::invalid_argument("spec: too short");
  int64_t nb = spec[5];
  if (nb <= 0 || len != HPAT_SPEC_HEADER + nb * HPAT_SPEC_BLOCK) {
    throw std::invalid_argument("spec: length " + std::to_string(len) + " does not match " +
                                std::to_string(nb) + " blocks");
  }
  for (int i = 0; i < 5; i++) {
    if (spec[i] < 0 || (i != 2 && spec[i] == 0)) throw std::invalid_argument("spec: bad header value");
  }
  if (spec[2] > 1) throw std::invalid_argument("spec: stem must be 0 (maxpool) or 1 (conv)");
  std::vector<BlockSpec> out;
  for (int64_t i = 0; i < nb; i++) {
    const int64_t *p = spec + HPAT_SPEC_HEADER + i * HPAT_SPEC_BLOCK;
    BlockSpec b{p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]};
    if (b.stage <= 0 || b.index < 0 || b.in <= 0 || b.width <= 0 || b.out <= 0 || b.stride <= 0 ||
        b.groups <= 0 || b.se <= 0 || b.width % b.groups != 0) {
      throw std::invalid_argument("spec: bad block " + std::to_string(i));
    }
    out.push_back(b);
  }
  return out;
}

}  // namespace

struct hpat_model {
  Net net{nullptr};
  torch::Device device{torch::kCPU};
  int64_t in_chans = 0, num_classes = 0;
  std::vector<Entry> entries;
  std::unordered_map<std::string, size_t> index;
};

// An optimizer bound to one model: SGD (the recipe) or AdamW.
struct hpat_sgd {
  hpat_model *model;
  bool adamw = false;
  std::unique_ptr<torch::optim::Optimizer> opt;
};

namespace {

// timm ResNet init, drawn from a private generator so models are reproducible and independent.
void init_weights(hpat_model *m, uint64_t seed) {
  torch::NoGradGuard ng;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto &item : m->net->named_modules()) {
    auto *mod = item.value().get();
    if (auto *c = dynamic_cast<nn::Conv2dImpl *>(mod)) {
      auto w = c->weight;
      int64_t rf = w.size(2) * w.size(3);
      double fan_out = static_cast<double>(w.size(0) * rf);
      double fan_in = static_cast<double>(w.size(1) * rf);
      w.normal_(0.0, std::sqrt(2.0 / fan_out), gen);
      if (c->bias.defined()) {
        double bound = 1.0 / std::sqrt(fan_in);
        c->bias.uniform_(-bound, bound, gen);
      }
    } else if (auto *b = dynamic_cast<nn::BatchNorm2dImpl *>(mod)) {
      b->weight.fill_(1.0);
      b->bias.zero_();
    } else if (auto *l = dynamic_cast<nn::LinearImpl *>(mod)) {
      double bound = 1.0 / std::sqrt(static_cast<double>(l->weight.size(1)));
      l->weight.uniform_(-bound, bound, gen);
      l->bias.uniform_(-bound, bound, gen);
    }
  }
  // zero_init_last: the last BN of every residual branch starts at zero.
  for (auto &item : m->net->named_modules()) {
    if (auto *blk = dynamic_cast<BottleneckImpl *>(item.value().get())) blk->bn3->weight.zero_();
  }
}

void collect(hpat_model *m) {
  m->entries.clear();
  m->index.clear();
  for (auto &item : m->net->named_modules()) {
    const std::string &prefix = item.key();
    auto add = [&](const std::string &n, const torch::Tensor &t, bool buffer) {
      std::string full = prefix.empty() ? n : prefix + "." + n;
      m->index[full] = m->entries.size();
      m->entries.push_back({full, t, kind_of(full, buffer)});
    };
    for (auto &p : item.value()->named_parameters(false)) add(p.key(), p.value(), false);
    for (auto &b : item.value()->named_buffers(false)) add(b.key(), b.value(), true);
  }
}

Entry *lookup(hpat_model *m, const char *name) {
  if (name == nullptr) throw std::invalid_argument("tensor name is NULL");
  auto it = m->index.find(name);
  if (it == m->index.end()) throw std::invalid_argument(std::string("no tensor named ") + name);
  return &m->entries[it->second];
}

torch::Tensor input_tensor(hpat_model *m, const float *x, int64_t n, int64_t c, int64_t h, int64_t w) {
  if (x == nullptr) throw std::invalid_argument("input is NULL");
  if (n <= 0 || h <= 0 || w <= 0) throw std::invalid_argument("input dimensions must be positive");
  if (c != m->in_chans) {
    throw std::invalid_argument("input has " + std::to_string(c) + " channels, model expects " +
                                std::to_string(m->in_chans));
  }
  // Always a copy: the result must not alias the caller's buffer.
  return torch::from_blob(const_cast<float *>(x), {n, c, h, w}, torch::kFloat32)
      .to(torch::TensorOptions().device(m->device).dtype(torch::kFloat32), /*non_blocking=*/false, /*copy=*/true);
}

void copy_out(const torch::Tensor &t, float *dst) {
  auto c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  std::memcpy(dst, c.data_ptr<float>(), c.numel() * sizeof(float));
}

// Autocast scope for CUDA (bfloat16: no gradient scaling needed). PyTorch 2.4 replaced the
// CUDA-only calls by per-device-type ones.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define HPAT_AUTOCAST_ON()                                          \
  do {                                                              \
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);     \
    at::autocast::set_autocast_enabled(at::kCUDA, true);            \
  } while (0)
#define HPAT_AUTOCAST_OFF() at::autocast::set_autocast_enabled(at::kCUDA, false)
#else
#define HPAT_AUTOCAST_ON()                                  \
  do {                                                      \
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);    \
    at::autocast::set_enabled(true);                        \
  } while (0)
#define HPAT_AUTOCAST_OFF() at::autocast::set_enabled(false)
#endif
struct AutocastScope {
  bool on;
  explicit AutocastScope(bool enable) : on(enable) {
    if (on) {
      HPAT_AUTOCAST_ON();
      at::autocast::increment_nesting();
    }
  }
  ~AutocastScope() {
    if (on) {
      if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
      HPAT_AUTOCAST_OFF();
    }
  }
};

torch::Tensor loss_of(const torch::Tensor &logits, const torch::Tensor &y, int kind, double gamma) {
  namespace F = torch::nn::functional;
  switch (kind) {
    case HPAT_LOSS_BCE:
      return F::binary_cross_entropy_with_logits(logits, y);
    case HPAT_LOSS_FOCAL: {
      auto ce = F::binary_cross_entropy_with_logits(
          logits, y, F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
      auto p = torch::sigmoid(logits);
      auto pt = p * y + (1 - p) * (1 - y);
      return (ce * torch::pow(1 - pt, gamma)).mean();
    }
    case HPAT_LOSS_SOFT_F1: {
      auto p = torch::sigmoid(logits);
      auto tp = (p * y).sum(0);
      auto fp = (p * (1 - y)).sum(0);
      auto fn = ((1 - p) * y).sum(0);
      auto f1 = 2 * tp / (2 * tp + fp + fn + 1e-7);
      return 1 - f1.mean();
    }
  }
  throw std::invalid_argument("unknown loss kind " + std::to_string(kind) + " (0 bce, 1 focal, 2 soft-f1)");
}

}  // namespace

extern "C" {

int hpat_abi_version(void) { return HPAT_ABI_VERSION; }

const char *hpat_version(void) {
  static const std::string v = "hpatorch " + std::to_string(HPAT_ABI_VERSION) + " (libtorch " +
                               std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) +
                               "." + std::to_string(TORCH_VERSION_PATCH) + ")";
  return v.c_str();
}

const char *hpat_last_error(void) { return g_last_error.c_str(); }

int hpat_set_num_threads(int n) {
  return guard(-1, [&] {
    if (n <= 0) return fail("set_num_threads: n must be positive");
    torch::set_num_threads(n);
    g_threads.store(n);
    t_threads = n;
    return 0;
  });
}

int hpat_get_num_threads(void) {
  return guard(-1, [] { return static_cast<int>(torch::get_num_threads()); });
}

int hpat_manual_seed(uint64_t seed) {
  return guard(-1, [&] {
    torch::manual_seed(seed);
    return 0;
  });
}

int hpat_cuda_available(void) {
  return guard(0, [] { return torch::cuda::is_available() ? 1 : 0; });
}

int hpat_cuda_device_count(void) {
  return guard(0, [] { return static_cast<int>(torch::cuda::device_count()); });
}

hpat_model *hpat_model_new(const int64_t *spec, int64_t spec_len, const char *device, uint64_t seed) {
  return guard<hpat_model *>(nullptr, [&]() -> hpat_model * {
    auto blocks = parse_blocks(spec, spec_len);
    torch::Device dev(device == nullptr ? std::string("cpu") : std::string(device));
    if (dev.is_cuda()) {
      if (!torch::cuda::is_available()) {
        fail(std::string("device ") + device + ": this libtorch has no usable CUDA");
        return nullptr;
      }
      int64_t idx = dev.has_index() ? dev.index() : 0;
      if (idx >= static_cast<int64_t>(torch::cuda::device_count())) {
        fail(std::string("device ") + device + ": only " + std::to_string(torch::cuda::device_count()) +
             " CUDA devices");
        return nullptr;
      }
    } else if (!dev.is_cpu()) {
      fail(std::string("device ") + device + ": want cpu or cuda:N");
      return nullptr;
    }
    auto m = std::make_unique<hpat_model>();
    m->in_chans = spec[0];
    m->num_classes = spec[1];
    m->device = dev;
    m->net = Net(spec[0], spec[1], spec[2] == 1, spec[3], spec[4], blocks);
    init_weights(m.get(), seed);
    m->net->to(dev);
    collect(m.get());  // after .to(): tensors are replaced when moved
    return m.release();
  });
}

void hpat_model_free(hpat_model *m) { delete m; }

int64_t hpat_model_num_tensors(hpat_model *m) { return m ? static_cast<int64_t>(m->entries.size()) : -1; }

int64_t hpat_model_num_classes(hpat_model *m) { return m ? m->num_classes : -1; }

const char *hpat_model_tensor_name(hpat_model *m, int64_t i) {
  if (m == nullptr || i < 0 || i >= static_cast<int64_t>(m->entries.size())) {
    fail("tensor index out of range");
    return nullptr;
  }
  return m->entries[i].name.c_str();
}

int hpat_model_tensor_info(hpat_model *m, int64_t i, int64_t *kind, int64_t *ndim, int64_t *shape) {
  if (m == nullptr || i < 0 || i >= static_cast<int64_t>(m->entries.size())) {
    return fail("tensor index out of range");
  }
  const auto &e = m->entries[i];
  if (e.t.dim() > HPAT_MAX_DIMS) return fail("tensor " + e.name + " has too many dimensions");
  *kind = e.kind;
  *ndim = e.t.dim();
  for (int64_t d = 0; d < e.t.dim(); d++) shape[d] = e.t.size(d);
  return 0;
}

int hpat_model_get_tensor(hpat_model *m, const char *name, void *dst, int64_t nbytes) {
  return guard(-1, [&] {
    if (m == nullptr || dst == nullptr) return fail("get_tensor: NULL argument");
    Entry *e = lookup(m, name);
    auto c = e->t.detach().to(torch::kCPU).contiguous();
    int64_t want = c.numel() * static_cast<int64_t>(c.element_size());
    if (nbytes != want) {
      return fail("get_tensor " + e->name + ": buffer has " + std::to_string(nbytes) + " bytes, need " +
                  std::to_string(want));
    }
    std::memcpy(dst, c.data_ptr(), want);
    return 0;
  });
}

int hpat_model_set_tensor(hpat_model *m, const char *name, const void *src, int64_t nbytes) {
  return guard(-1, [&] {
    if (m == nullptr || src == nullptr) return fail("set_tensor: NULL argument");
    Entry *e = lookup(m, name);
    int64_t want = e->t.numel() * static_cast<int64_t>(e->t.element_size());
    if (nbytes != want) {
      return fail("set_tensor " + e->name + ": buffer has " + std::to_string(nbytes) + " bytes, need " +
                  std::to_string(want));
    }
    torch::NoGradGuard ng;
    auto host = torch::from_blob(const_cast<void *>(src), e->t.sizes(), e->t.scalar_type());
    e->t.copy_(host);
    return 0;
  });
}

int hpat_model_forward(hpat_model *m, const float *x, int64_t n, int64_t c, int64_t h, int64_t w, int train,
                       float *out) {
  return guard(-1, [&] {
    if (m == nullptr || out == nullptr) return fail("forward: NULL argument");
    sync_threads();
    torch::NoGradGuard ng;
    auto in = input_tensor(m, x, n, c, h, w);
    m->net->train(train != 0);
    auto logits = m->net->forward(in);
    copy_out(logits, out);
    return 0;
  });
}

hpat_sgd *hpat_sgd_new(hpat_model *m, double lr, double momentum, double weight_decay, int nesterov) {
  return guard<hpat_sgd *>(nullptr, [&]() -> hpat_sgd * {
    if (m == nullptr) {
      fail("sgd_new: NULL model");
      return nullptr;
    }
    if (!(lr > 0) || momentum < 0 || weight_decay < 0) {
      fail("sgd_new: lr must be positive, momentum and weight_decay non-negative");
      return nullptr;
    }
    if (nesterov && momentum <= 0) {
      fail("sgd_new: nesterov needs a positive momentum");
      return nullptr;
    }
    auto o = std::make_unique<hpat_sgd>();
    o->model = m;
    o->opt = std::make_unique<torch::optim::SGD>(
        m->net->parameters(),
        torch::optim::SGDOptions(lr).momentum(momentum).weight_decay(weight_decay).nesterov(nesterov != 0));
    return o.release();
  });
}

void hpat_sgd_free(hpat_sgd *o) { delete o; }

int hpat_sgd_set_lr(hpat_sgd *o, double lr) {
  return guard(-1, [&] {
    if (o == nullptr) return fail("sgd_set_lr: NULL optimizer");
    if (!(lr > 0)) return fail("sgd_set_lr: lr must be positive");
    for (auto &g : o->opt->param_groups()) {
      if (o->adamw) {
        static_cast<torch::optim::AdamWOptions &>(g.options()).lr(lr);
      } else {
        static_cast<torch::optim::SGDOptions &>(g.options()).lr(lr);
      }
    }
    return 0;
  });
}

}  // extern "C"

namespace {
// The optimizer state is keyed by the parameter's TensorImpl: a std::string of the pointer in
// libtorch 1.x, the pointer itself in 2.x. Compute whichever key this libtorch uses.
template <typename Map>
typename Map::key_type state_key(const Map &, const torch::Tensor &p) {
  using K = typename Map::key_type;
  if constexpr (std::is_same_v<K, std::string>) {
    std::ostringstream s;
    s << static_cast<void *>(p.unsafeGetTensorImpl());
    return s.str();
  } else {
    return static_cast<K>(static_cast<void *>(p.unsafeGetTensorImpl()));
  }
}

Entry *param_entry(hpat_sgd *o, const char *name) {
  Entry *e = lookup(o->model, name);
  if (e->kind != 0) throw std::invalid_argument(e->name + " is a buffer, not a trainable parameter");
  return e;
}
}  // namespace

extern "C" {

hpat_sgd *hpat_adamw_new(hpat_model *m, double lr, double beta1, double beta2, double eps, double weight_decay) {
  return guard<hpat_sgd *>(nullptr, [&]() -> hpat_sgd * {
    if (m == nullptr) {
      fail("adamw_new: NULL model");
      return nullptr;
    }
    if (!(lr > 0) || !(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) || !(eps > 0) || weight_decay < 0) {
      fail("adamw_new: need lr > 0, betas in [0,1), eps > 0, weight_decay >= 0");
      return nullptr;
    }
    auto o = std::make_unique<hpat_sgd>();
    o->model = m;
    o->adamw = true;
    o->opt = std::make_unique<torch::optim::AdamW>(
        m->net->parameters(),
        torch::optim::AdamWOptions(lr).betas(std::make_tuple(beta1, beta2)).eps(eps).weight_decay(weight_decay));
    return o.release();
  });
}

int hpat_optim_is_adamw(hpat_sgd *o) { return o != nullptr && o->adamw ? 1 : 0; }

namespace {
// The tensor of state slot `slot` (see hpatorch.h) of one parameter's state, or an undefined tensor.
torch::Tensor *state_slot(hpat_sgd *o, torch::optim::OptimizerParamState &st, int slot) {
  if (o->adamw) {
    auto &a = static_cast<torch::optim::AdamWParamState &>(st);
    if (slot == 0) return &a.exp_avg();
    if (slot == 1) return &a.exp_avg_sq();
  } else if (slot == 0) {
    return &static_cast<torch::optim::SGDParamState &>(st).momentum_buffer();
  }
  return nullptr;
}

void check_slot(hpat_sgd *o, int slot) {
  int slots = o->adamw ? 3 : 1;
  if (slot < 0 || slot >= slots) {
    throw std::invalid_argument("optimizer state slot " + std::to_string(slot) + " out of range (0.." +
                                std::to_string(slots - 1) + ")");
  }
}
}  // namespace

int hpat_optim_get_state(hpat_sgd *o, const char *name, int slot, float *dst, int64_t nbytes) {
  return guard(-1, [&] {
    if (o == nullptr || dst == nullptr) return fail("optim_get_state: NULL argument");
    check_slot(o, slot);
    Entry *e = param_entry(o, name);
    auto &state = o->opt->state();
    auto it = state.find(state_key(state, e->t));
    if (it == state.end()) return 0;
    if (o->adamw && slot == 2) {
      if (nbytes != 4) return fail("optim_get_state " + e->name + ": the step slot is one float32");
      *dst = static_cast<float>(static_cast<torch::optim::AdamWParamState &>(*it->second).step());
      return 1;
    }
    torch::Tensor *t = state_slot(o, *it->second, slot);
    if (t == nullptr || !t->defined()) return 0;
    auto c = t->detach().to(torch::kCPU, torch::kFloat32).contiguous();
    int64_t want = c.numel() * 4;
    if (nbytes != want) {
      return fail("optim_get_state " + e->name + ": buffer has " + std::to_string(nbytes) + " bytes, need " +
                  std::to_string(want));
    }
    std::memcpy(dst, c.data_ptr(), want);
    return 1;
  });
}

int hpat_optim_set_state(hpat_sgd *o, const char *name, int slot, const float *src, int64_t nbytes) {
  return guard(-1, [&] {
    if (o == nullptr || src == nullptr) return fail("optim_set_state: NULL argument");
    check_slot(o, slot);
    Entry *e = param_entry(o, name);
    auto &state = o->opt->state();
    auto key = state_key(state, e->t);
    auto it = state.find(key);
    if (it == state.end()) {
      torch::NoGradGuard ng;
      if (o->adamw) {
        auto st = std::make_unique<torch::optim::AdamWParamState>();
        st->step(0);
        st->exp_avg(torch::zeros_like(e->t, torch::MemoryFormat::Preserve));
        st->exp_avg_sq(torch::zeros_like(e->t, torch::MemoryFormat::Preserve));
        state[key] = std::move(st);
      } else {
        state[key] = std::make_unique<torch::optim::SGDParamState>();
      }
      it = state.find(key);
    }
    if (o->adamw && slot == 2) {
      if (nbytes != 4) return fail("optim_set_state " + e->name + ": the step slot is one float32");
      static_cast<torch::optim::AdamWParamState &>(*it->second).step(static_cast<int64_t>(*src));
      return 0;
    }
    int64_t want = e->t.numel() * 4;
    if (nbytes != want) {
      return fail("optim_set_state " + e->name + ": buffer has " + std::to_string(nbytes) + " bytes, need " +
                  std::to_string(want));
    }
    torch::NoGradGuard ng;
    auto buf = torch::from_blob(const_cast<float *>(src), e->t.sizes(), torch::kFloat32)
                   .to(e->t.options(), false, /*copy=*/true);
    *state_slot(o, *it->second, slot) = buf;
    return 0;
  });
}

int hpat_sgd_get_momentum(hpat_sgd *o, const char *name, float *dst, int64_t nbytes) {
  if (o != nullptr && o->adamw) return fail("sgd_get_momentum: the optimizer is AdamW");
  return hpat_optim_get_state(o, name, 0, dst, nbytes);
}

int hpat_sgd_set_momentum(hpat_sgd *o, const char *name, const float *src, int64_t nbytes) {
  if (o != nullptr && o->adamw) return fail("sgd_set_momentum: the optimizer is AdamW");
  return hpat_optim_set_state(o, name, 0, src, nbytes);
}

int hpat_train_step(hpat_model *m, hpat_sgd *o, const float *x, int64_t n, int64_t c, int64_t h, int64_t w,
                    const float *targets, int loss_kind, double gamma, int amp, float *loss_out,
                    float *logits_out) {
  return guard(-1, [&] {
    if (m == nullptr || o == nullptr || targets == nullptr || loss_out == nullptr) {
      return fail("train_step: NULL argument");
    }
    if (o->model != m) return fail("train_step: optimizer belongs to another model");
    sync_threads();
    if (amp && !m->device.is_cuda()) return fail("train_step: mixed precision needs a cuda device");
    if (loss_kind < 0 || loss_kind > 2) {
      return fail("train_step: unknown loss kind " + std::to_string(loss_kind) + " (0 bce, 1 focal, 2 soft-f1)");
    }
    auto in = input_tensor(m, x, n, c, h, w);
    auto y = torch::from_blob(const_cast<float *>(targets), {n, m->num_classes}, torch::kFloat32)
                 .to(torch::TensorOptions().device(m->device).dtype(torch::kFloat32), false, /*copy=*/true);
    m->net->train(true);
    o->opt->zero_grad();
    torch::Tensor logits;
    {
      AutocastScope ac(amp != 0);
      logits = m->net->forward(in);
    }
    logits = logits.to(torch::kFloat32);
    auto loss = loss_of(logits, y, loss_kind, gamma);
    loss.backward();
    o->opt->step();
    *loss_out = loss.item<float>();
    if (logits_out != nullptr) copy_out(logits, logits_out);
    return 0;
  });
}

}  // extern "C"
