/*
 * Byte-plane kernels for the object store, fused with the XOR delta.
 *
 * A tensor's residual is coded as byte planes (plane k holds byte k of every element).
 * In numpy, splitting and merging planes are strided copies, one per plane, plus a
 * separate pass for the XOR against the base tensor; here each is one pass over memory,
 * with the GIL released so checkout and ingest threads run them in parallel.
 *
 *   merge(out, planes, pred, mode)
 *       out[i] = bytes(planes[0][i], ..., planes[k-1][i]) ^ pred[i]          (mode 0)
 *       out[i] = unzigzag(bytes(planes[0][i], ...)) + pred[i]  (mode 1, `sub`)
 *   split(src, pred, out, itemsize, mode)
 *       out[k*n + i] = byte k of src[i] ^ pred[i]                              (mode 0)
 *       ... of zigzag(src[i] - pred[i])                                        (mode 1, `sub`)
 *       ... of src[i] ^ pred[i], or 0 where src[i] == 0 != pred[i]            (mode 2, `mxor`)
 *   mask_bits(src, pred, out, itemsize)   packed bits: src[i] == 0 != pred[i]
 *   zero_masked(out, mask, itemsize)  zero the elements whose mask bit is set
 *   cast_f32(src, out, target)        float32 bits to float16 / bfloat16 bits
 *   exponent_histogram(pred, itemsize, shift, hist)   counts of each exponent field value
 *   group_split(src, pred, out, itemsize, shift, lut, bounds)
 *   group_merge(out, planes, pred, itemsize, shift, lut, bounds)
 *       `gsub` (lineage/store/groups.py): the planes of zigzag(src - pred) with the
 *       elements placed group by group (group lut[exponent of pred], in order within a
 *       group, group g at bounds[g] .. bounds[g + 1]), and back.
 *
 * `planes` holds one buffer of n bytes per byte of an element, or None for a plane
 * that is all zero; `pred` may be None (no XOR). Elements are handled as bytes, so the
 * results do not depend on the machine's endianness matching the data's.
 *
 * The pure numpy versions in `lineage/store/planes.py` compute the same bytes and are
 * used when this module is not built; the tests check that both agree.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
/* one build runs well on every x86-64: the best clone is picked when the module loads */
#define KERNEL __attribute__((target_clones("avx2", "default")))
#define HAVE_AVX2_SPLIT 1
#include <immintrin.h>
#else
#define KERNEL
#define HAVE_AVX2_SPLIT 0
#endif

/* The inverse of the zigzag map of `sub` residuals: 0, 1, 2, 3 -> 0, -1, 1, -2. */
#define UNZIGZAG(T, r) ((T)(((r) >> 1) ^ (T)((T)0 - ((r) & 1u))))

/* Elements of type T from the planes (WORD(i) assembles element i), then, with a
 * prediction q: XOR it (mode 0) or add it to the unzigzagged residual (mode 1, `sub`). */
#define MERGE_LOOPS(T, WORD)                                                               \
    do {                                                                                   \
        T *o = (T *)out;                                                                   \
        const T *q = (const T *)pred;                                                      \
        if (!pred)                                                                         \
            for (Py_ssize_t i = 0; i < n; i++) o[i] = WORD(i);                             \
        else if (mode == 0)                                                                \
            for (Py_ssize_t i = 0; i < n; i++) o[i] = (T)(WORD(i) ^ q[i]);                 \
        else                                                                               \
            for (Py_ssize_t i = 0; i < n; i++) {                                           \
                T r = WORD(i);                                                             \
                o[i] = (T)(UNZIGZAG(T, r) + q[i]);                                         \
            }                                                                              \
    } while (0)

#define WORD4(i) ((uint32_t)p0[i] | ((uint32_t)p1[i] << 8) | ((uint32_t)p2[i] << 16) | \
                  ((uint32_t)p3[i] << 24))
#define WORD2(i) ((uint16_t)((uint16_t)p0[i] | ((uint16_t)p1[i] << 8)))

KERNEL static void merge4(uint8_t *out, const uint8_t *p0, const uint8_t *p1,
                          const uint8_t *p2, const uint8_t *p3, const uint8_t *pred,
                          int mode, Py_ssize_t n) {
    MERGE_LOOPS(uint32_t, WORD4);
}

KERNEL static void merge2(uint8_t *out, const uint8_t *p0, const uint8_t *p1,
                          const uint8_t *pred, int mode, Py_ssize_t n) {
    MERGE_LOOPS(uint16_t, WORD2);
}

#if HAVE_AVX2_SPLIT
/* Splitting narrows every element into several planes, which compilers do not
 * vectorize; with AVX2 a shuffle groups each lane's bytes by plane, 32 bytes a step. */
__attribute__((target("avx2"))) static Py_ssize_t split4_avx2(const uint8_t *src,
                                                              const uint8_t *pred,
                                                              uint8_t *out, Py_ssize_t stride,
                                                              Py_ssize_t n) {
    const __m256i group = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11,
                                           15, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7,
                                           11, 15);
    const __m256i gather = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    uint8_t *p0 = out, *p1 = out + stride, *p2 = out + 2 * stride, *p3 = out + 3 * stride;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(src + 4 * i));
        if (pred) v = _mm256_xor_si256(v, _mm256_loadu_si256((const __m256i *)(pred + 4 * i)));
        v = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(v, group), gather);
        __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
        _mm_storel_epi64((__m128i *)(p0 + i), lo);
        _mm_storel_epi64((__m128i *)(p1 + i), _mm_unpackhi_epi64(lo, lo));
        _mm_storel_epi64((__m128i *)(p2 + i), hi);
        _mm_storel_epi64((__m128i *)(p3 + i), _mm_unpackhi_epi64(hi, hi));
    }
    return i;
}

__attribute__((target("avx2"))) static Py_ssize_t split2_avx2(const uint8_t *src,
                                                              const uint8_t *pred,
                                                              uint8_t *out, Py_ssize_t stride,
                                                              Py_ssize_t n) {
    const __m256i group = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13,
                                           15, 0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11,
                                           13, 15);
    uint8_t *p0 = out, *p1 = out + stride;
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(src + 2 * i));
        if (pred) v = _mm256_xor_si256(v, _mm256_loadu_si256((const __m256i *)(pred + 2 * i)));
        /* per lane: 8 low bytes, then 8 high bytes; then the lanes' halves side by side */
        v = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, group), 0xD8);
        _mm_storeu_si128((__m128i *)(p0 + i), _mm256_castsi256_si128(v));
        _mm_storeu_si128((__m128i *)(p1 + i), _mm256_extracti128_si256(v, 1));
    }
    return i;
}
#endif

/* Any element size: byte by byte (8-byte dtypes are rare in model weights). */
static void merge_any(uint8_t *out, const uint8_t *const *planes, const uint8_t *pred,
                      int mode, Py_ssize_t n, Py_ssize_t size) {
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t *o = out + i * size;
        const uint8_t *q = pred ? pred + i * size : NULL;
        if (mode == 1 && q) {  /* little-endian integers of `size` bytes (2 to 8) */
            uint64_t r = 0, base = 0;
            for (Py_ssize_t k = 0; k < size; k++) {
                r |= (uint64_t)(planes[k] ? planes[k][i] : 0) << (8 * k);
                base |= (uint64_t)q[k] << (8 * k);
            }
            uint64_t v = UNZIGZAG(uint64_t, r) + base;
            for (Py_ssize_t k = 0; k < size; k++) o[k] = (uint8_t)(v >> (8 * k));
            continue;
        }
        for (Py_ssize_t k = 0; k < size; k++) {
            uint8_t b = planes[k] ? planes[k][i] : 0;
            o[k] = q ? (uint8_t)(b ^ q[k]) : b;
        }
    }
}

/* Split n elements (XOR q first, if given) into planes at out + k * stride. */
static void split_planes(const uint8_t *s, const uint8_t *q, uint8_t *o, Py_ssize_t stride,
                         Py_ssize_t n, Py_ssize_t size) {
    Py_ssize_t done = 0;
#if HAVE_AVX2_SPLIT
    if ((size == 4 || size == 2) && __builtin_cpu_supports("avx2"))
        done = size == 4 ? split4_avx2(s, q, o, stride, n) : split2_avx2(s, q, o, stride, n);
#endif
    if (size == 1 && !q) {
        memcpy(o, s, (size_t)n);
        return;
    }
    /* the tail (or everything, without AVX2 or for other sizes), byte by byte */
    for (Py_ssize_t i = done; i < n; i++)
        for (Py_ssize_t k = 0; k < size; k++) {
            uint8_t b = s[i * size + k];
            o[k * stride + i] = q ? (uint8_t)(b ^ q[i * size + k]) : b;
        }
}

/* The residual of `sub` (zigzag of the difference) or `mxor` (XOR, zero where the
 * element is zero but the prediction is not) for n elements of one integer type. */
#define RESIDUAL(T, ST, src_, pred_, res_, n_, mode_)                                       \
    do {                                                                                   \
        const T *ps = (const T *)(src_), *pq = (const T *)(pred_);                         \
        T *pr = (T *)(res_);                                                               \
        if ((mode_) == 1)                                                                  \
            for (Py_ssize_t j = 0; j < (n_); j++) {                                        \
                T d = (T)(ps[j] - pq[j]);                                                  \
                pr[j] = (T)((T)(d << 1) ^ (T)((ST)d >> (sizeof(T) * 8 - 1)));              \
            }                                                                              \
        else                                                                               \
            for (Py_ssize_t j = 0; j < (n_); j++)                                          \
                pr[j] = (ps[j] == 0 && pq[j] != 0) ? (T)0 : (T)(ps[j] ^ pq[j]);            \
    } while (0)

static void residual_block(const uint8_t *s, const uint8_t *q, uint8_t *r, Py_ssize_t n,
                           Py_ssize_t size, int mode) {
    switch (size) {
    case 1: RESIDUAL(uint8_t, int8_t, s, q, r, n, mode); break;
    case 2: RESIDUAL(uint16_t, int16_t, s, q, r, n, mode); break;
    case 4: RESIDUAL(uint32_t, int32_t, s, q, r, n, mode); break;
    default: RESIDUAL(uint64_t, int64_t, s, q, r, n, mode); break;
    }
}

#define RESIDUAL_BLOCK 4096 /* elements: a residual block of 8-byte elements is 32 KiB */

#define MAX_PLANES 16

static PyObject *merge(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer out = {0}, pred = {0};
    Py_buffer bufs[MAX_PLANES];
    int held[MAX_PLANES] = {0};
    const uint8_t *ptrs[MAX_PLANES] = {0};
    PyObject *planes_obj, *pred_obj, *seq = NULL, *result = NULL;
    uint8_t *zeros = NULL;
    Py_ssize_t size = 0, n = 0;
    int have_pred = 0, mode = 0;

    if (!PyArg_ParseTuple(args, "w*OO|i:merge", &out, &planes_obj, &pred_obj, &mode))
        return NULL;
    if (mode != 0 && mode != 1) {
        PyErr_SetString(PyExc_ValueError, "mode must be 0 (xor) or 1 (add)");
        PyBuffer_Release(&out);
        return NULL;
    }
    seq = PySequence_Fast(planes_obj, "planes must be a sequence");
    if (!seq) goto done;
    size = PySequence_Fast_GET_SIZE(seq);
    if (size < 1 || size > MAX_PLANES || out.len % size) {
        PyErr_SetString(PyExc_ValueError, "output length does not match the planes");
        goto done;
    }
    n = out.len / size;
    for (Py_ssize_t k = 0; k < size; k++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, k);
        if (item == Py_None) continue;
        if (PyObject_GetBuffer(item, &bufs[k], PyBUF_SIMPLE) < 0) goto done;
        held[k] = 1;
        if (bufs[k].len != n) {
            PyErr_SetString(PyExc_ValueError, "a plane has the wrong length");
            goto done;
        }
        ptrs[k] = (const uint8_t *)bufs[k].buf;
    }
    if (pred_obj != Py_None) {
        if (PyObject_GetBuffer(pred_obj, &pred, PyBUF_SIMPLE) < 0) goto done;
        have_pred = 1;
        if (pred.len != out.len) {
            PyErr_SetString(PyExc_ValueError, "the prediction has the wrong length");
            goto done;
        }
    }
    if (size == 2 || size == 4) {
        /* the fixed-size kernels read every plane: an all-zero plane becomes real zeros */
        for (Py_ssize_t k = 0; k < size; k++) {
            if (ptrs[k]) continue;
            if (!zeros && !(zeros = (uint8_t *)PyMem_RawCalloc((size_t)(n ? n : 1), 1))) {
                PyErr_NoMemory();
                goto done;
            }
            ptrs[k] = zeros;
        }
    }
    {
        const uint8_t *q = have_pred ? (const uint8_t *)pred.buf : NULL;
        uint8_t *o = (uint8_t *)out.buf;
        const uint8_t *p = ptrs[0];
        Py_BEGIN_ALLOW_THREADS
        if (size == 4) merge4(o, ptrs[0], ptrs[1], ptrs[2], ptrs[3], q, mode, n);
        else if (size == 2) merge2(o, ptrs[0], ptrs[1], q, mode, n);
        else if (size > 1) merge_any(o, ptrs, q, mode, n, size);
        else if (mode == 1 && q) {
            for (Py_ssize_t i = 0; i < n; i++) {
                uint8_t r = p ? p[i] : 0;
                o[i] = (uint8_t)(UNZIGZAG(uint8_t, r) + q[i]);
            }
        }
        else if (!p && !q) memset(o, 0, (size_t)n);
        else if (!q) memcpy(o, p, (size_t)n);
        else if (!p) memcpy(o, q, (size_t)n);
        else for (Py_ssize_t i = 0; i < n; i++) o[i] = p[i] ^ q[i];
        Py_END_ALLOW_THREADS
    }
    result = Py_None;
    Py_INCREF(result);
done:
    for (Py_ssize_t k = 0; k < size && k < MAX_PLANES; k++)
        if (held[k]) PyBuffer_Release(&bufs[k]);
    if (have_pred) PyBuffer_Release(&pred);
    PyBuffer_Release(&out);
    PyMem_RawFree(zeros);
    Py_XDECREF(seq);
    return result;
}

static PyObject *split(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer src = {0}, pred = {0}, out = {0};
    PyObject *pred_obj;
    Py_ssize_t size;
    int have_pred = 0, mode = 0;
    PyObject *result = NULL;

    if (!PyArg_ParseTuple(args, "y*Ow*n|i:split", &src, &pred_obj, &out, &size, &mode))
        return NULL;
    if (size != 1 && size != 2 && size != 4 && size != 8) {
        PyErr_SetString(PyExc_ValueError, "element size must be 1, 2, 4 or 8");
        goto done;
    }
    if (src.len % size || out.len != src.len) {
        PyErr_SetString(PyExc_ValueError, "buffer lengths do not match the element size");
        goto done;
    }
    if (mode < 0 || mode > 2) {
        PyErr_SetString(PyExc_ValueError, "mode must be 0 (xor), 1 (sub) or 2 (mxor)");
        goto done;
    }
    if (pred_obj != Py_None) {
        if (PyObject_GetBuffer(pred_obj, &pred, PyBUF_SIMPLE) < 0) goto done;
        have_pred = 1;
        if (pred.len != src.len) {
            PyErr_SetString(PyExc_ValueError, "the prediction has the wrong length");
            goto done;
        }
    }
    {
        const uint8_t *s = (const uint8_t *)src.buf;
        const uint8_t *q = have_pred ? (const uint8_t *)pred.buf : NULL;
        uint8_t *o = (uint8_t *)out.buf;
        Py_ssize_t n = src.len / size;
        Py_BEGIN_ALLOW_THREADS
        if (!q || mode == 0) {
            split_planes(s, q, o, n, n, size);
        } else {
            /* sub / mxor: the residual of a block (in cache), then its planes */
            uint64_t block[RESIDUAL_BLOCK];
            for (Py_ssize_t i = 0; i < n; i += RESIDUAL_BLOCK) {
                Py_ssize_t count = n - i < RESIDUAL_BLOCK ? n - i : RESIDUAL_BLOCK;
                residual_block(s + i * size, q + i * size, (uint8_t *)block, count, size, mode);
                split_planes((const uint8_t *)block, NULL, o + i, n, count, size);
            }
        }
        Py_END_ALLOW_THREADS
    }
    result = Py_None;
    Py_INCREF(result);
done:
    if (have_pred) PyBuffer_Release(&pred);
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    return result;
}

/* Eight elements to one byte of mask bits at a time (vectorized by the compiler). */
#define MASK_BITS(T, src_, pred_, out_, n_)                                                 \
    do {                                                                                   \
        const T *ps = (const T *)(src_), *pq = (const T *)(pred_);                         \
        Py_ssize_t j = 0;                                                                  \
        for (; j + 8 <= (n_); j += 8) {                                                    \
            unsigned bits = 0;                                                             \
            for (int k = 0; k < 8; k++)                                                    \
                bits |= (unsigned)((ps[j + k] == 0) & (pq[j + k] != 0)) << k;              \
            (out_)[j >> 3] = (uint8_t)bits;                                                \
        }                                                                                  \
        if (j < (n_)) {                                                                    \
            unsigned bits = 0;                                                             \
            for (int k = 0; j + k < (n_); k++)                                             \
                bits |= (unsigned)((ps[j + k] == 0) & (pq[j + k] != 0)) << k;              \
            (out_)[j >> 3] = (uint8_t)bits;                                                \
        }                                                                                  \
    } while (0)

/* mask_bits(src, pred, out, itemsize): bit i of `out` (packed, little-endian bit order)
 * is set where element i of src is zero and that of pred is not: the mask of `mxor`. */
static PyObject *mask_bits(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer src = {0}, pred = {0}, out = {0};
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "y*y*w*n:mask_bits", &src, &pred, &out, &size)) return NULL;
    PyObject *result = NULL;
    if ((size != 1 && size != 2 && size != 4 && size != 8) || src.len % size ||
        pred.len != src.len || out.len != (src.len / size + 7) / 8) {
        PyErr_SetString(PyExc_ValueError, "buffer lengths do not match the element size");
    } else {
        const uint8_t *s = (const uint8_t *)src.buf, *q = (const uint8_t *)pred.buf;
        uint8_t *o = (uint8_t *)out.buf;
        Py_ssize_t n = src.len / size;
        Py_BEGIN_ALLOW_THREADS
        switch (size) {
        case 1: MASK_BITS(uint8_t, s, q, o, n); break;
        case 2: MASK_BITS(uint16_t, s, q, o, n); break;
        case 4: MASK_BITS(uint32_t, s, q, o, n); break;
        default: MASK_BITS(uint64_t, s, q, o, n); break;
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&pred);
    PyBuffer_Release(&out);
    return result;
}

/* zero_masked(out, mask, itemsize): zero element i of `out` where bit i of `mask`
 * (packed, little-endian bit order) is set: the pruned elements of an `mxor` tensor. */
static PyObject *zero_masked(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer out = {0}, mask = {0};
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "w*y*n:zero_masked", &out, &mask, &size)) return NULL;
    PyObject *result = NULL;
    if (size < 1 || out.len % size || mask.len != (out.len / size + 7) / 8) {
        PyErr_SetString(PyExc_ValueError, "mask length does not match the elements");
    } else {
        uint8_t *o = (uint8_t *)out.buf;
        const uint8_t *m = (const uint8_t *)mask.buf;
        Py_ssize_t n = out.len / size;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t byte = 0; byte < mask.len; byte++) {
            uint8_t bits = m[byte];
            while (bits) {
                int j = __builtin_ctz(bits);
                Py_ssize_t i = byte * 8 + j;
                if (i < n) memset(o + i * size, 0, (size_t)size);
                bits &= (uint8_t)(bits - 1);
            }
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&mask);
    return result;
}

/* ---- float32 -> float16 / bfloat16 bit casts (a cast base predicts fp16/bf16 copies) ----
 * Bit for bit what numpy (float16) and torch (bfloat16) produce: round to nearest even,
 * overflow to infinity, NaNs kept NaN with their top payload bits. */

static uint16_t f32_to_f16_one(uint32_t f) {
    uint32_t sign = (f >> 16) & 0x8000u, exp = (f >> 23) & 0xffu, sig = f & 0x7fffffu;
    if (exp == 0xffu) {
        if (!sig) return (uint16_t)(sign | 0x7c00u);
        uint32_t nan = 0x7c00u + (sig >> 13);
        if (nan == 0x7c00u) nan++; /* a payload only in the low bits stays a NaN */
        return (uint16_t)(sign | nan);
    }
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        sig |= 0x800000u;
        int shift = 14 - e;
        uint32_t half = sig >> shift, rem = sig & ((1u << shift) - 1), tie = 1u << (shift - 1);
        if (rem > tie || (rem == tie && (half & 1u))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (sig >> 13), rem = sig & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) half++; /* may carry to inf */
    return (uint16_t)(sign | half);
}

#if HAVE_AVX2_SPLIT
/* The hardware conversion rounds the same way; blocks holding a NaN (whose payload the
 * hardware treats differently) go through the scalar code. */
__attribute__((target("avx2,f16c"))) static Py_ssize_t f32_to_f16_f16c(const uint32_t *src,
                                                                      uint16_t *out,
                                                                      Py_ssize_t n) {
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps((const float *)(src + i));
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {
            for (Py_ssize_t k = i; k < i + 8; k++) out[k] = f32_to_f16_one(src[k]);
            continue;
        }
        _mm_storeu_si128((__m128i *)(out + i),
                         _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    return i;
}
#endif

KERNEL static void f32_to_bf16(const uint32_t *src, uint16_t *out, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t u = src[i];
        uint16_t rounded = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        int nan = (u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu);
        out[i] = nan ? (uint16_t)((u >> 16) | 0x40u) : rounded;
    }
}

/* cast_f32(src, out, target): target "F16" or "BF16"; src holds float32 bit patterns. */
static PyObject *cast_f32(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer src = {0}, out = {0};
    const char *target;
    if (!PyArg_ParseTuple(args, "y*w*s:cast_f32", &src, &out, &target)) return NULL;
    PyObject *result = NULL;
    int bf16 = strcmp(target, "BF16") == 0;
    if (!bf16 && strcmp(target, "F16") != 0) {
        PyErr_SetString(PyExc_ValueError, "target must be F16 or BF16");
    } else if (src.len % 4 || out.len != src.len / 2) {
        PyErr_SetString(PyExc_ValueError, "output length does not match the input");
    } else {
        const uint32_t *s = (const uint32_t *)src.buf;
        uint16_t *o = (uint16_t *)out.buf;
        Py_ssize_t n = src.len / 4;
        Py_BEGIN_ALLOW_THREADS
        if (bf16) {
            f32_to_bf16(s, o, n);
        } else {
            Py_ssize_t done = 0;
#if HAVE_AVX2_SPLIT
            if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c"))
                done = f32_to_f16_f16c(s, o, n);
#endif
            for (Py_ssize_t i = done; i < n; i++) o[i] = f32_to_f16_one(s[i]);
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    return result;
}

/* ---- exponent groups (`gsub`, see lineage/store/groups.py) ----
 * The group of element i is lut[(pred[i] >> shift) & (len(lut) - 1)]; group g occupies
 * positions bounds[g] .. bounds[g + 1] of the planes, in element order. A hostile header
 * can name groups that do not match the base: every write and read is bounds-checked,
 * and a mismatch is an error, never an out-of-range access. */

#define MAX_GROUPS 2048

/* Parse and check (lut, bounds): lut holds uint16 group indexes, a power-of-two count;
 * bounds holds int64 offsets, one more than groups, rising from 0 to n. */
static int group_args(const Py_buffer *lut, const Py_buffer *bounds, Py_ssize_t n,
                      Py_ssize_t *groups, uint64_t *field) {
    Py_ssize_t entries = lut->len / 2, g = bounds->len / 8 - 1;
    const int64_t *b = (const int64_t *)bounds->buf;
    if (lut->len % 2 || entries < 1 || (entries & (entries - 1)) || bounds->len % 8 || g < 1 ||
        g > MAX_GROUPS || b[0] != 0 || b[g] != n) {
        PyErr_SetString(PyExc_ValueError, "malformed exponent groups");
        return -1;
    }
    for (Py_ssize_t k = 0; k < g; k++)
        if (b[k] > b[k + 1]) {
            PyErr_SetString(PyExc_ValueError, "malformed exponent groups");
            return -1;
        }
    *groups = g;
    *field = (uint64_t)entries - 1;
    return 0;
}

#define GROUP_SPLIT(T, ST)                                                                  \
    do {                                                                                   \
        const T *ps = (const T *)s, *pq = (const T *)q;                                    \
        for (Py_ssize_t i = 0; i < n; i++) {                                               \
            uint16_t g = lut[(pq[i] >> shift) & field];                                    \
            if (g >= groups || cursor[g] >= b[g + 1]) { bad = 1; break; }                  \
            int64_t k = cursor[g]++;                                                       \
            T d = (T)(ps[i] - pq[i]);                                                      \
            T r = (T)((T)(d << 1) ^ (T)((ST)d >> (sizeof(T) * 8 - 1)));                    \
            for (Py_ssize_t byte = 0; byte < (Py_ssize_t)sizeof(T); byte++)               \
                o[byte * n + k] = (uint8_t)(r >> (8 * byte));                              \
        }                                                                                  \
    } while (0)

#define GROUP_MERGE(T)                                                                      \
    do {                                                                                   \
        T *po = (T *)o;                                                                    \
        const T *pq = (const T *)q;                                                        \
        for (Py_ssize_t i = 0; i < n; i++) {                                               \
            uint16_t g = lut[(pq[i] >> shift) & field];                                    \
            if (g >= groups || cursor[g] >= b[g + 1]) { bad = 1; break; }                  \
            int64_t k = cursor[g]++;                                                       \
            T r = 0;                                                                       \
            for (Py_ssize_t byte = 0; byte < (Py_ssize_t)sizeof(T); byte++)               \
                r |= (T)((T)p[byte * n + k] << (8 * byte));                                \
            po[i] = (T)(UNZIGZAG(T, r) + pq[i]);                                           \
        }                                                                                  \
    } while (0)

static int valid_shift(Py_ssize_t size, int shift) {
    if ((size != 2 && size != 4 && size != 8) || shift < 0 || shift >= size * 8) {
        PyErr_SetString(PyExc_ValueError, "element size must be 2, 4 or 8, the shift inside it");
        return 0;
    }
    return 1;
}

/* exponent_histogram(pred, itemsize, shift, hist): hist[v] += count of elements whose
 * field (pred >> shift) & (len(hist) - 1) is v; hist holds int64, a power-of-two count. */
static PyObject *exponent_histogram(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer pred = {0}, hist = {0};
    Py_ssize_t size;
    int shift;
    if (!PyArg_ParseTuple(args, "y*niw*:exponent_histogram", &pred, &size, &shift, &hist))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t entries = hist.len / 8;
    if (!valid_shift(size, shift)) {
    } else if (pred.len % size || hist.len % 8 || entries < 1 || (entries & (entries - 1))) {
        PyErr_SetString(PyExc_ValueError, "buffer lengths do not match");
    } else {
        int64_t *h = (int64_t *)hist.buf;
        const uint8_t *q = (const uint8_t *)pred.buf;
        uint64_t field = (uint64_t)entries - 1;
        Py_ssize_t n = pred.len / size;
        int64_t *part[4];
        int64_t *counts = (int64_t *)PyMem_RawCalloc((size_t)(4 * entries), sizeof(int64_t));
        if (!counts) {
            PyBuffer_Release(&pred);
            PyBuffer_Release(&hist);
            return PyErr_NoMemory();
        }
        for (int k = 0; k < 4; k++) part[k] = counts + k * entries;
        Py_BEGIN_ALLOW_THREADS
/* four tables, summed at the end: consecutive elements of one exponent would
         * otherwise wait on each other's increment of the same counter */
#define HISTOGRAM(T)                                                                      \
    do {                                                                                  \
        const T *v = (const T *)q;                                                        \
        Py_ssize_t i = 0;                                                                 \
        for (; i + 4 <= n; i += 4) {                                                      \
            part[0][(v[i] >> shift) & field]++;                                           \
            part[1][(v[i + 1] >> shift) & field]++;                                       \
            part[2][(v[i + 2] >> shift) & field]++;                                       \
            part[3][(v[i + 3] >> shift) & field]++;                                       \
        }                                                                                 \
        for (; i < n; i++) part[0][(v[i] >> shift) & field]++;                            \
    } while (0)
        if (size == 2) HISTOGRAM(uint16_t);
        else if (size == 4) HISTOGRAM(uint32_t);
        else HISTOGRAM(uint64_t);
#undef HISTOGRAM
        for (Py_ssize_t k = 0; k < entries; k++)
            h[k] += part[0][k] + part[1][k] + part[2][k] + part[3][k];
        Py_END_ALLOW_THREADS
        PyMem_RawFree(counts);
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&pred);
    PyBuffer_Release(&hist);
    return result;
}

/* The shared body of group_split and group_merge. */
static PyObject *group_pass(PyObject *args, int splitting) {
    Py_buffer a = {0}, c = {0}, pred = {0}, lut_buf = {0}, bounds = {0};
    Py_ssize_t size, groups = 0;
    int shift, bad = 0;
    uint64_t field = 0;
    int64_t *cursor = NULL;
    PyObject *result = NULL;
    /* split: (src, pred, out, ...); merge: (out, planes, pred, ...) */
    if (splitting ? !PyArg_ParseTuple(args, "y*y*w*niy*y*:group_split", &a, &pred, &c, &size,
                                      &shift, &lut_buf, &bounds)
                  : !PyArg_ParseTuple(args, "w*y*y*niy*y*:group_merge", &c, &a, &pred, &size,
                                      &shift, &lut_buf, &bounds))
        return NULL;
    /* a: the elements read (src) or the planes read; c: what is written */
    Py_ssize_t n = pred.len / (size > 0 ? size : 1);
    if (!valid_shift(size, shift)) goto done;
    if (pred.len % size || a.len != pred.len || c.len != pred.len) {
        PyErr_SetString(PyExc_ValueError, "buffer lengths do not match the element size");
        goto done;
    }
    if (group_args(&lut_buf, &bounds, n, &groups, &field) < 0) goto done;
    if (!(cursor = (int64_t *)PyMem_RawMalloc((size_t)groups * sizeof(int64_t)))) {
        PyErr_NoMemory();
        goto done;
    }
    {
        const int64_t *b = (const int64_t *)bounds.buf;
        const uint16_t *lut = (const uint16_t *)lut_buf.buf;
        const uint8_t *q = (const uint8_t *)pred.buf;
        memcpy(cursor, b, (size_t)groups * sizeof(int64_t));
        Py_BEGIN_ALLOW_THREADS
        if (splitting) {
            const uint8_t *s = (const uint8_t *)a.buf;
            uint8_t *o = (uint8_t *)c.buf;
            if (size == 2) GROUP_SPLIT(uint16_t, int16_t);
            else if (size == 4) GROUP_SPLIT(uint32_t, int32_t);
            else GROUP_SPLIT(uint64_t, int64_t);
        } else {
            const uint8_t *p = (const uint8_t *)a.buf;
            uint8_t *o = (uint8_t *)c.buf;
            if (size == 2) GROUP_MERGE(uint16_t);
            else if (size == 4) GROUP_MERGE(uint32_t);
            else GROUP_MERGE(uint64_t);
        }
        for (Py_ssize_t g = 0; !bad && g < groups; g++) bad = cursor[g] != b[g + 1];
        Py_END_ALLOW_THREADS
    }
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "exponent groups do not match the base");
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_RawFree(cursor);
    PyBuffer_Release(&a);
    PyBuffer_Release(&c);
    PyBuffer_Release(&pred);
    PyBuffer_Release(&lut_buf);
    PyBuffer_Release(&bounds);
    return result;
}

static PyObject *group_split(PyObject *Py_UNUSED(self), PyObject *args) {
    return group_pass(args, 1);
}

static PyObject *group_merge(PyObject *Py_UNUSED(self), PyObject *args) {
    return group_pass(args, 0);
}

static PyMethodDef methods[] = {
    {"merge", merge, METH_VARARGS,
     "merge(out, planes, pred, mode=0): out = elements from byte planes (None: zero), "
     "XOR pred (mode 0) or unzigzagged plus pred (mode 1)."},
    {"cast_f32", cast_f32, METH_VARARGS,
     "cast_f32(src, out, target): float32 bits to F16 or BF16 bits, rounding to nearest even."},
    {"zero_masked", zero_masked, METH_VARARGS,
     "zero_masked(out, mask, itemsize): zero the elements whose mask bit is set."},
    {"split", split, METH_VARARGS,
     "split(src, pred, out, itemsize, mode=0): byte planes, plane-major, into out, of "
     "src XOR pred (mode 0), zigzag(src - pred) (1), or XOR zeroed where src is 0 (2)."},
    {"exponent_histogram", exponent_histogram, METH_VARARGS,
     "exponent_histogram(pred, itemsize, shift, hist): count each exponent field value."},
    {"group_split", group_split, METH_VARARGS,
     "group_split(src, pred, out, itemsize, shift, lut, bounds): planes of zigzag(src - "
     "pred), elements placed group by group."},
    {"group_merge", group_merge, METH_VARARGS,
     "group_merge(out, planes, pred, itemsize, shift, lut, bounds): the inverse."},
    {"mask_bits", mask_bits, METH_VARARGS,
     "mask_bits(src, pred, out, itemsize): packed bits of src == 0 and pred != 0."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_planes",
    .m_doc = "Fused byte-plane kernels of the object store.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__planes(void) { return PyModule_Create(&module); }
