// oneDNN matmul as an XLA FFI handler for the CPU backend.
//
// Why this exists: perceiver/onednn.py. Built on first use by that module
// (g++, against jaxlib's FFI headers and the `onednn-cpu-gomp` wheel's
// libdnnl.so.3). The operands' logical dims and element strides come as
// attributes, so transposed operands (the backward pass) are read in place.

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "xla/ffi/api/ffi.h"

// The few oneDNN v3 C API entry points used (oneapi/dnnl/dnnl.h), declared
// here so that only the runtime wheel, not its headers, is needed. Handles
// are opaque pointers; enums are ints; dnnl_dims_t is int64_t[12].
extern "C" {
typedef void *dnnl_handle;
int dnnl_engine_create(dnnl_handle *engine, int kind, size_t index);
int dnnl_stream_create(dnnl_handle *stream, dnnl_handle engine, unsigned flags);
int dnnl_stream_wait(dnnl_handle stream);
int dnnl_memory_desc_create_with_strides(dnnl_handle *md, int ndims, const int64_t *dims, int data_type,
                                         const int64_t *strides);
int dnnl_memory_desc_destroy(dnnl_handle md);
int dnnl_matmul_primitive_desc_create(dnnl_handle *pd, dnnl_handle engine, dnnl_handle src, dnnl_handle weights,
                                      dnnl_handle bias, dnnl_handle dst, dnnl_handle attr);
int dnnl_primitive_desc_destroy(dnnl_handle pd);
int dnnl_primitive_create(dnnl_handle *primitive, dnnl_handle pd);
int dnnl_memory_create(dnnl_handle *memory, dnnl_handle md, dnnl_handle engine, void *handle);
int dnnl_memory_destroy(dnnl_handle memory);
struct dnnl_exec_arg_t {
  int arg;
  dnnl_handle memory;
};
int dnnl_primitive_execute(dnnl_handle primitive, dnnl_handle stream, int nargs, const dnnl_exec_arg_t *args);
}

namespace ffi = xla::ffi;

namespace {

constexpr int kSuccess = 0, kEngineCpu = 1, kStreamInOrder = 1;
constexpr int kBf16 = 2, kF32 = 3;
constexpr int kArgSrc = 1, kArgDst = 17, kArgWeights = 33;
constexpr int kMaxDims = 12;

struct Matmul {
  dnnl_handle primitive = nullptr;
  dnnl_handle md[3] = {nullptr, nullptr, nullptr};  // src, weights, dst
};

// For a matmul that could not be built: its descriptors are not cached, so
// they are freed here (a refused shape may be asked for again).
void DestroyDescriptors(Matmul *m) {
  for (dnnl_handle &h : m->md) {
    if (h != nullptr) dnnl_memory_desc_destroy(h);
    h = nullptr;
  }
}

dnnl_handle Engine() {
  static dnnl_handle engine = [] {
    dnnl_handle e = nullptr;
    return dnnl_engine_create(&e, kEngineCpu, 0) == kSuccess ? e : nullptr;
  }();
  return engine;
}

dnnl_handle Stream() {
  thread_local dnnl_handle stream = [] {
    dnnl_handle s = nullptr;
    return dnnl_stream_create(&s, Engine(), kStreamInOrder) == kSuccess ? s : nullptr;
  }();
  return stream;
}

int DnnlType(ffi::DataType t) {
  if (t == ffi::DataType::BF16) return kBf16;
  if (t == ffi::DataType::F32) return kF32;
  return -1;
}

// One primitive per (dtypes, dims, strides); created once, shared by threads
// (oneDNN primitives are safe to execute concurrently). layout: dims and
// strides of src, weights and dst, each of ndims entries.
const Matmul *GetMatmul(const int64_t *layout[6], const int types[3], size_t ndims, std::string *error) {
  static std::mutex mu;
  static std::map<std::vector<int64_t>, Matmul> cache;
  std::vector<int64_t> key = {types[0], types[1], types[2], static_cast<int64_t>(ndims)};
  for (int i = 0; i < 6; ++i) key.insert(key.end(), layout[i], layout[i] + ndims);
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return &it->second;
  Matmul m;
  for (int i = 0; i < 3; ++i) {
    int64_t dims[kMaxDims] = {0}, strides[kMaxDims] = {0};
    for (size_t d = 0; d < ndims; ++d) {
      dims[d] = layout[2 * i][d];
      strides[d] = layout[2 * i + 1][d];
    }
    if (dnnl_memory_desc_create_with_strides(&m.md[i], static_cast<int>(ndims), dims, types[i], strides) !=
        kSuccess) {
      *error = "oneDNN: memory descriptor rejected";
      DestroyDescriptors(&m);
      return nullptr;
    }
  }
  dnnl_handle pd = nullptr;
  if (dnnl_matmul_primitive_desc_create(&pd, Engine(), m.md[0], m.md[1], nullptr, m.md[2], nullptr) != kSuccess) {
    *error = "oneDNN: no matmul implementation for these shapes and dtypes";
    DestroyDescriptors(&m);
    return nullptr;
  }
  int status = dnnl_primitive_create(&m.primitive, pd);
  dnnl_primitive_desc_destroy(pd);
  if (status != kSuccess) {
    *error = "oneDNN: matmul primitive creation failed";
    DestroyDescriptors(&m);
    return nullptr;
  }
  return &cache.emplace(key, m).first->second;
}

ffi::Error MatmulImpl(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out,
                      ffi::Span<const int64_t> a_dims, ffi::Span<const int64_t> a_strides,
                      ffi::Span<const int64_t> b_dims, ffi::Span<const int64_t> b_strides,
                      ffi::Span<const int64_t> out_dims, ffi::Span<const int64_t> out_strides) {
  const size_t ndims = a_dims.size();
  const ffi::Span<const int64_t> spans[6] = {a_dims, a_strides, b_dims, b_strides, out_dims, out_strides};
  for (const auto &s : spans) {
    if (s.size() != ndims || ndims < 2 || ndims > kMaxDims) {
      return ffi::Error::InvalidArgument("onednn_matmul: dims/strides attributes must all have one rank in [2, 12]");
    }
  }
  const int types[3] = {DnnlType(a.element_type()), DnnlType(b.element_type()), DnnlType(out->element_type())};
  if (types[0] < 0 || types[1] < 0 || types[2] < 0) {
    return ffi::Error::InvalidArgument("onednn_matmul: operands must be bfloat16 or float32");
  }
  if (Engine() == nullptr || Stream() == nullptr) {
    return ffi::Error::Internal("oneDNN: CPU engine or stream creation failed");
  }
  const int64_t *layout[6];
  for (int i = 0; i < 6; ++i) layout[i] = spans[i].begin();
  std::string error;
  const Matmul *m = GetMatmul(layout, types, ndims, &error);
  if (m == nullptr) return ffi::Error::Internal(error);

  void *data[3] = {a.untyped_data(), b.untyped_data(), out->untyped_data()};
  dnnl_handle mem[3] = {nullptr, nullptr, nullptr};
  ffi::Error result = ffi::Error::Success();
  for (int i = 0; i < 3 && result.success(); ++i) {
    if (dnnl_memory_create(&mem[i], m->md[i], Engine(), data[i]) != kSuccess) {
      result = ffi::Error::Internal("oneDNN: memory creation failed");
    }
  }
  if (result.success()) {
    const dnnl_exec_arg_t args[3] = {{kArgSrc, mem[0]}, {kArgWeights, mem[1]}, {kArgDst, mem[2]}};
    if (dnnl_primitive_execute(m->primitive, Stream(), 3, args) != kSuccess || dnnl_stream_wait(Stream()) != kSuccess) {
      result = ffi::Error::Internal("oneDNN: matmul execution failed");
    }
  }
  for (dnnl_handle h : mem) {
    if (h != nullptr) dnnl_memory_destroy(h);
  }
  return result;
}

}  // namespace

// 1 when oneDNN has a bf16 x bf16 -> f32 matmul for this CPU, else 0: a
// 16x16 one through the handler's own primitive cache. Its bf16 kernels need
// AVX-512 (or AMX); on an AVX2-only CPU the primitive descriptor is refused,
// and every call of the handler would fail.
extern "C" int PerceiverOnednnBf16Supported() {
  if (Engine() == nullptr) return 0;
  const int64_t dims[2] = {16, 16}, strides[2] = {16, 1};
  const int64_t *layout[6] = {dims, strides, dims, strides, dims, strides};
  const int types[3] = {kBf16, kBf16, kF32};
  std::string error;
  return GetMatmul(layout, types, 2, &error) != nullptr;
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(PerceiverOnednnMatmul, MatmulImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<ffi::Span<const int64_t>>("a_dims")
                                  .Attr<ffi::Span<const int64_t>>("a_strides")
                                  .Attr<ffi::Span<const int64_t>>("b_dims")
                                  .Attr<ffi::Span<const int64_t>>("b_strides")
                                  .Attr<ffi::Span<const int64_t>>("out_dims")
                                  .Attr<ffi::Span<const int64_t>>("out_strides"));
