/* pl_xla.h: the kernels as XLA FFI handlers (JAX's `jax.ffi.ffi_call` on CPU).
 *
 * A handler reads its operands straight from XLA's buffers and writes its
 * results into XLA's: no copy and no Python on the way (`jax.pure_callback`
 * copies every operand through `device_put`, which costs more than the
 * kernels themselves on large arrays). Built only where setup.py finds XLA's
 * C API header (`xla/ffi/api/c_api.h`, shipped with jaxlib: `jax.ffi.include_dir()`)
 * and defines PL_XLA_FFI; the modules then export `xla_handlers()`, a dict of
 * name -> PyCapsule for `jax.ffi.register_ffi_target(..., api_version=1)`.
 *
 * Only the C ABI of the header is used (structs versioned by their sizes): a
 * handler answers XLA's metadata query with the header's API version, runs at
 * the execute stage only, and reads buffers and scalar attributes (by name) from
 * the call frame. Every check failure is returned as an XLA error, never a crash.
 *
 * C API (static, one copy per module):
 *   PL_XLA_PROLOGUE(frame)              return early for a metadata query or a
 *                                       stage other than execute
 *   pl_xla_error(frame, message)        an INVALID_ARGUMENT error for XLA
 *   pl_xla_arg(frame, i) / pl_xla_ret   the i-th operand / result buffer, or NULL
 *   pl_xla_numel(buffer), pl_xla_last   element count, last dimension (1 for rank 0)
 *   pl_xla_attr_f64 / pl_xla_attr_i64   a scalar attribute by name (any numeric dtype)
 *   pl_xla_huge_pages(data, bytes)      ask Linux for transparent huge pages on a large result
 */
#ifndef PL_XLA_H
#define PL_XLA_H

#ifdef PL_XLA_FFI

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pl_huge.h"
#include "xla/ffi/api/c_api.h"

static XLA_FFI_Error *pl_xla_error(XLA_FFI_CallFrame *frame, const char *message) {
    XLA_FFI_Error_Create_Args args;
    memset(&args, 0, sizeof args);
    args.struct_size = XLA_FFI_Error_Create_Args_STRUCT_SIZE;
    args.message = message;
    args.errc = XLA_FFI_Error_Code_INVALID_ARGUMENT;
    return frame->api->XLA_FFI_Error_Create(&args);
}

/* 1 when the call is a metadata query (answered here) or not the execute stage. */
static int pl_xla_skip(XLA_FFI_CallFrame *frame) {
    XLA_FFI_Extension_Base *ext = frame->extension_start;
    if (ext != NULL && ext->type == XLA_FFI_Extension_Metadata) {
        XLA_FFI_Metadata *meta = ((XLA_FFI_Metadata_Extension *)ext)->metadata;
        meta->api_version.struct_size = XLA_FFI_Api_Version_STRUCT_SIZE;
        meta->api_version.extension_start = NULL;
        meta->api_version.major_version = XLA_FFI_API_MAJOR;
        meta->api_version.minor_version = XLA_FFI_API_MINOR;
        meta->traits = 0;
        return 1;
    }
    return frame->stage != XLA_FFI_ExecutionStage_EXECUTE;
}

#define PL_XLA_PROLOGUE(frame)                         \
    do {                                               \
        if (pl_xla_skip(frame)) return NULL;           \
    } while (0)

static XLA_FFI_Buffer *pl_xla_arg(XLA_FFI_CallFrame *frame, int64_t i) {
    if (i >= frame->args.size || frame->args.types[i] != XLA_FFI_ArgType_BUFFER) return NULL;
    return (XLA_FFI_Buffer *)frame->args.args[i];
}

static XLA_FFI_Buffer *pl_xla_ret(XLA_FFI_CallFrame *frame, int64_t i) {
    if (i >= frame->rets.size || frame->rets.types[i] != XLA_FFI_RetType_BUFFER) return NULL;
    return (XLA_FFI_Buffer *)frame->rets.rets[i];
}

static int64_t pl_xla_numel(const XLA_FFI_Buffer *b) {
    int64_t n = 1;
    for (int64_t d = 0; d < b->rank; d++) n *= b->dims[d];
    return n;
}

static int64_t pl_xla_last(const XLA_FFI_Buffer *b) { return b->rank ? b->dims[b->rank - 1] : 1; }

static const XLA_FFI_Scalar *pl_xla_scalar(XLA_FFI_CallFrame *frame, const char *name) {
    size_t len = strlen(name);
    for (int64_t i = 0; i < frame->attrs.size; i++) {
        const XLA_FFI_ByteSpan *key = frame->attrs.names[i];
        if (frame->attrs.types[i] == XLA_FFI_AttrType_SCALAR && key->len == len && memcmp(key->ptr, name, len) == 0)
            return (const XLA_FFI_Scalar *)frame->attrs.attrs[i];
    }
    return NULL;
}

/* The scalar attribute `name` as a double into *out: 0, or -1 when absent or not numeric. */
static int pl_xla_attr_f64(XLA_FFI_CallFrame *frame, const char *name, double *out) {
    const XLA_FFI_Scalar *s = pl_xla_scalar(frame, name);
    if (s == NULL) return -1;
    switch (s->dtype) {
        case XLA_FFI_DataType_F64: *out = *(const double *)s->value; return 0;
        case XLA_FFI_DataType_F32: *out = *(const float *)s->value; return 0;
        case XLA_FFI_DataType_S64: *out = (double)*(const int64_t *)s->value; return 0;
        case XLA_FFI_DataType_S32: *out = *(const int32_t *)s->value; return 0;
        default: return -1;
    }
}

static int pl_xla_attr_i64(XLA_FFI_CallFrame *frame, const char *name, int64_t *out) {
    double v;
    if (pl_xla_attr_f64(frame, name, &v) < 0) return -1;
    *out = (int64_t)v;
    return 0;
}

/* Transparent huge pages for a large result buffer that the kernel is about to
 * write: XLA's CPU allocator maps a fresh buffer per call for large results and
 * does not ask for huge pages (pl_huge.h). */
#define pl_xla_huge_pages pl_huge_pages

/* The capsule name that jax.ffi.register_ffi_target accepts for a handler. */
#define PL_XLA_CAPSULE(fn) PyCapsule_New((void *)(fn), NULL, NULL)

#endif /* PL_XLA_FFI */
#endif /* PL_XLA_H */
