/* OTLP ExportTraceServiceRequest (protobuf wire format) straight into Arrow column buffers.
 *
 * Why: decoding into Python protobuf objects and walking them costs ~20-70 us per span, most of
 * a collector's time. This walks the wire bytes once and appends to growable byte buffers laid
 * out as Arrow arrays (int32 offsets + UTF-8 data, int64 values); Python wraps them with
 * pa.Array.from_buffers, so no Python object is made per span. The rules (validation, value
 * rendering, error texts) are those of the reference decoder in otlp.py, byte for byte; the
 * tests compare the two. A malformed wire structure raises ValueError (HTTP 400); a span that
 * breaks a rule is rolled back and reported (OTLP partial success).
 *
 * The walk runs without the GIL, so the collector's other request threads (HTTP, the spool, the
 * writer handing rows to chDB) go on meanwhile: it touches no Python object, and the few places
 * that raise take the GIL back for that (``raise_error``).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Set a Python exception, with or without the GIL held (the walk runs without it). */
static int raise_error(PyObject *type, const char *what) {
    PyGILState_STATE gil = PyGILState_Ensure();
    if (what) PyErr_SetString(type, what);
    else PyErr_NoMemory();
    PyGILState_Release(gil);
    return -1;
}

/* ---------------------------------------------------------------- growable buffers */
typedef struct { char *p; size_t len, cap; } Buf;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return raise_error(PyExc_MemoryError, NULL);
    b->p = p; b->cap = cap;
    return 0;
}
static int buf_put(Buf *b, const void *src, size_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}
static int buf_i32(Buf *b, int32_t v) { return buf_put(b, &v, 4); }
static int buf_i64(Buf *b, int64_t v) { return buf_put(b, &v, 8); }

/* A string column: offsets (int32, starting with 0) and data. */
typedef struct { Buf off, data; } Str;
static int str_init(Str *s) { return buf_i32(&s->off, 0); }
static int str_close(Str *s) { /* end the value being built in data */
    if (s->data.len > INT32_MAX) return raise_error(PyExc_ValueError, "request too large once decoded");
    return buf_i32(&s->off, (int32_t)s->data.len);
}
static int str_push(Str *s, const char *p, size_t n) {
    if (buf_put(&s->data, p, n) < 0) return -1;
    return str_close(s);
}
static size_t str_count(Str *s) { return s->off.len / 4 - 1; }

/* A Map(String, String) column: offsets per row into key/value string columns. */
typedef struct { Buf off; Str keys, values; } Map;
static int map_init(Map *m) { return buf_i32(&m->off, 0) || str_init(&m->keys) || str_init(&m->values); }
static int map_close_row(Map *m) { return buf_i32(&m->off, (int32_t)str_count(&m->keys)); }

enum { C_TRACE, C_SPAN, C_PARENT, C_TSTATE, C_NAME, C_KIND, C_SERVICE, C_SCOPE, C_SCOPEV, C_STATUS,
       C_STATUSMSG, N_STR };
static const char *STR_NAMES[N_STR] = {"TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName",
    "SpanKind", "ServiceName", "ScopeName", "ScopeVersion", "StatusCode", "StatusMessage"};

typedef struct {
    Buf ts, dur;
    Str s[N_STR];
    Map rattr, sattr;
    Buf ev_off, ev_ts; Str ev_name; Map ev_attr;
    Buf ln_off; Str ln_trace, ln_span, ln_state; Map ln_attr;
} Cols;

/* Every buffer's length, to roll a rejected span back. */
#define N_BUFS 64 /* more than all_bufs lists (55) */
static Buf *all_bufs(Cols *c, Buf **out) {
    int k = 0;
    out[k++] = &c->ts; out[k++] = &c->dur;
    for (int i = 0; i < N_STR; i++) { out[k++] = &c->s[i].off; out[k++] = &c->s[i].data; }
    Map *maps[4] = {&c->rattr, &c->sattr, &c->ev_attr, &c->ln_attr};
    for (int i = 0; i < 4; i++) {
        out[k++] = &maps[i]->off; out[k++] = &maps[i]->keys.off; out[k++] = &maps[i]->keys.data;
        out[k++] = &maps[i]->values.off; out[k++] = &maps[i]->values.data;
    }
    out[k++] = &c->ev_off; out[k++] = &c->ev_ts; out[k++] = &c->ev_name.off; out[k++] = &c->ev_name.data;
    out[k++] = &c->ln_off;
    Str *ls[3] = {&c->ln_trace, &c->ln_span, &c->ln_state};
    for (int i = 0; i < 3; i++) { out[k++] = &ls[i]->off; out[k++] = &ls[i]->data; }
    out[k] = NULL;
    return out[0];
}

/* ---------------------------------------------------------------- wire format */
typedef struct { const uint8_t *p, *end; } Rd;
typedef struct { uint32_t num; int wt; uint64_t v; const uint8_t *data; size_t len; } Field;

static int bad(const char *what) { return raise_error(PyExc_ValueError, what); }

static inline int rd_varint(Rd *r, uint64_t *out) {
    if (r->p < r->end && *r->p < 0x80) { *out = *r->p++; return 0; } /* the common 1-byte case */
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end) return bad("truncated varint");
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) { *out = v; return 0; }
    }
    return bad("varint longer than 10 bytes");
}

/* Next field: 1 on a field, 0 at the end, -1 on malformed input (ValueError set). */
static int rd_field(Rd *r, Field *f) {
    if (r->p >= r->end) return 0;
    uint64_t key;
    if (rd_varint(r, &key) < 0) return -1;
    f->num = (uint32_t)(key >> 3);
    f->wt = (int)(key & 7);
    if (f->num == 0 || (key >> 3) > 0x1fffffff) return bad("invalid field number");
    switch (f->wt) {
    case 0: return rd_varint(r, &f->v) < 0 ? -1 : 1;
    case 1:
        if (r->end - r->p < 8) return bad("truncated fixed64");
        memcpy(&f->v, r->p, 8); r->p += 8; return 1;
    case 5: {
        uint32_t v32;
        if (r->end - r->p < 4) return bad("truncated fixed32");
        memcpy(&v32, r->p, 4); r->p += 4; f->v = v32; return 1;
    }
    case 2: {
        uint64_t n;
        if (rd_varint(r, &n) < 0) return -1;
        if (n > (uint64_t)(r->end - r->p)) return bad("length-delimited field runs past its message");
        f->data = r->p; f->len = (size_t)n; r->p += n; return 1;
    }
    default:
        return bad("unsupported wire type (groups are not used by OTLP)");
    }
}
#define IS(f, n, w) ((f).num == (n) && (f).wt == (w))
#define SUB(f) ((Rd){(f).data, (f).data + (f).len})

/* ---------------------------------------------------------------- validation helpers */
static int utf8_ok(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i + 8 <= n) { /* ASCII runs, 8 bytes at a time */
        uint64_t w; memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ULL) break;
        i += 8;
    }
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t k; uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) { k = 1; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { k = 2; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { k = 3; cp = c & 0x07; }
        else return 0;
        if (i + k >= n) return 0; /* the sequence runs past the end */
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        i += k + 1;
    }
    return 1;
}

typedef struct {
    size_t max_value, max_key; int max_depth;
    const char *project; Py_ssize_t project_len;
    Py_ssize_t truncated;
    char reason[256];
} Ctx;

#define REJECT(ctx, ...) (snprintf((ctx)->reason, sizeof (ctx)->reason, __VA_ARGS__), 1)

/* Length of s cut to max_value bytes on a character boundary; counts a truncation. */
static size_t cut_len(Ctx *ctx, const uint8_t *s, size_t n) {
    if (n <= ctx->max_value) return n;
    ctx->truncated++;
    size_t k = ctx->max_value;
    while (k > 0 && (s[k] & 0xc0) == 0x80) k--;
    return k;
}

/* Push a string field value, cut and checked. Returns 0, 1 (reject: reason set) or -1. */
static int push_cut(Ctx *ctx, Str *col, const uint8_t *s, size_t n) {
    if (!utf8_ok(s, n)) return REJECT(ctx, "a string is not valid UTF-8");
    return str_push(col, (const char *)s, cut_len(ctx, s, n)) < 0 ? -1 : 0;
}

static const char HEX[] = "0123456789abcdef";
static int push_hex(Str *col, const uint8_t *s, size_t n) {
    if (buf_reserve(&col->data, 2 * n) < 0) return -1;
    for (size_t i = 0; i < n; i++) {
        col->data.p[col->data.len++] = HEX[s[i] >> 4];
        col->data.p[col->data.len++] = HEX[s[i] & 15];
    }
    return str_close(col);
}

/* An id field: must be `size` bytes and not all zeros (or absent when optional). */
static int check_id(Ctx *ctx, const uint8_t *s, size_t n, size_t size, const char *what, int optional) {
    if (optional && n == 0) return 0;
    if (n != size) return REJECT(ctx, "%s must be %zu bytes, got %zu", what, size, n);
    for (size_t i = 0; i < n; i++) if (s[i]) return 0;
    return REJECT(ctx, "%s is all zeros, which OTLP forbids", what);
}

static int check_time(Ctx *ctx, uint64_t ns, const char *what, int allow_zero) {
    if ((ns == 0 && !allow_zero) || ns > (uint64_t)INT64_MAX)
        return REJECT(ctx, "%s %llu is out of range (nanoseconds since 1970, before 2262)", what,
                      (unsigned long long)ns);
    return 0;
}

/* ---------------------------------------------------------------- value rendering */
/* Decimal text of v into out (at least 21 bytes); returns its length. snprintf is slow here. */
static size_t format_int(int64_t v, char *out) {
    char tmp[24];
    size_t n = 0, k = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do { tmp[n++] = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) out[k++] = '-';
    while (n) out[k++] = tmp[--n];
    out[k] = 0;
    return k;
}

static void format_double(double v, char *out, size_t size) {
    if (v != v) { snprintf(out, size, "NaN"); return; }
    if (v > 1.7976931348623157e308) { snprintf(out, size, "Infinity"); return; }
    if (v < -1.7976931348623157e308) { snprintf(out, size, "-Infinity"); return; }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, size, "%.*g", prec, v);
        if (strtod(out, NULL) == v) return;
    }
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static int put_base64(Buf *b, const uint8_t *s, size_t n) {
    if (buf_reserve(b, (n + 2) / 3 * 4) < 0) return -1;
    char *o = b->p + b->len;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *o++ = B64[v >> 18]; *o++ = B64[(v >> 12) & 63]; *o++ = B64[(v >> 6) & 63]; *o++ = B64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        *o++ = B64[v >> 18]; *o++ = B64[(v >> 12) & 63]; *o++ = '='; *o++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        *o++ = B64[v >> 18]; *o++ = B64[(v >> 12) & 63]; *o++ = B64[(v >> 6) & 63]; *o++ = '=';
    }
    b->len = (size_t)(o - b->p);
    return 0;
}

static int put_json_string(Buf *b, const uint8_t *s, size_t n) {
    if (buf_reserve(b, n + 2) < 0) return -1;
    b->p[b->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        const char *esc = NULL;
        char tmp[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) { snprintf(tmp, sizeof tmp, "\\u%04x", c); esc = tmp; }
        }
        if (esc) { if (buf_put(b, esc, strlen(esc)) < 0) return -1; }
        else if (buf_put(b, &c, 1) < 0) return -1;
    }
    return buf_put(b, "\"", 1);
}

/* AnyValue fields */
enum { AV_STRING = 1, AV_BOOL = 2, AV_INT = 3, AV_DOUBLE = 4, AV_ARRAY = 5, AV_KVLIST = 6, AV_BYTES = 7 };
typedef struct { int kind; uint64_t v; const uint8_t *data; size_t len; } AnyV;

/* The value of an AnyValue message: the last oneof member on the wire wins. */
static int read_any(const uint8_t *p, size_t n, AnyV *out) {
    Rd r = {p, p + n};
    Field f;
    int rc;
    out->kind = 0;
    while ((rc = rd_field(&r, &f)) > 0) {
        int wt_want = (f.num == AV_BOOL || f.num == AV_INT) ? 0 : f.num == AV_DOUBLE ? 1 : 2;
        if (f.num >= 1 && f.num <= 7 && f.wt == wt_want) {
            out->kind = (int)f.num; out->v = f.v; out->data = f.data; out->len = f.len;
        }
    }
    return rc;
}

static int render_json(Ctx *ctx, Buf *b, const uint8_t *p, size_t n, int depth);

/* KeyValue: key (1) and value (2); the last occurrence of each wins. */
static int read_kv(const uint8_t *p, size_t n, const uint8_t **key, size_t *klen, const uint8_t **val, size_t *vlen) {
    Rd r = {p, p + n};
    Field f;
    int rc;
    *key = p; *klen = 0; *val = NULL; *vlen = 0;
    while ((rc = rd_field(&r, &f)) > 0) {
        if (IS(f, 1, 2)) { *key = f.data; *klen = f.len; }
        else if (IS(f, 2, 2)) { *val = f.data; *vlen = f.len; }
    }
    return rc;
}

static int render_json(Ctx *ctx, Buf *b, const uint8_t *p, size_t n, int depth) {
    AnyV a;
    char num[40];
    if (read_any(p, n, &a) < 0) return -1;
    switch (a.kind) {
    case AV_STRING:
        if (!utf8_ok(a.data, a.len)) return REJECT(ctx, "a string is not valid UTF-8");
        return put_json_string(b, a.data, a.len);
    case AV_INT:
        return buf_put(b, num, format_int((int64_t)a.v, num));
    case AV_BOOL:
        return a.v ? buf_put(b, "true", 4) : buf_put(b, "false", 5);
    case AV_DOUBLE: {
        double d; memcpy(&d, &a.v, 8);
        format_double(d, num, sizeof num);
        if (d != d || d > 1.7976931348623157e308 || d < -1.7976931348623157e308)
            return put_json_string(b, (const uint8_t *)num, strlen(num));
        return buf_put(b, num, strlen(num));
    }
    case AV_BYTES:
        if (buf_put(b, "\"", 1) < 0 || put_base64(b, a.data, a.len) < 0) return -1;
        return buf_put(b, "\"", 1);
    case AV_ARRAY: case AV_KVLIST: {
        if (depth >= ctx->max_depth)
            return REJECT(ctx, "an attribute value nests arrays/maps deeper than %d levels", ctx->max_depth);
        int array = a.kind == AV_ARRAY;
        if (buf_put(b, array ? "[" : "{", 1) < 0) return -1;
        Rd r = {a.data, a.data + a.len};
        Field f;
        int rc, first = 1;
        while ((rc = rd_field(&r, &f)) > 0) {
            if (!IS(f, 1, 2)) continue;
            if (!first && buf_put(b, ",", 1) < 0) return -1;
            first = 0;
            if (array) {
                if ((rc = render_json(ctx, b, f.data, f.len, depth + 1)) != 0) return rc;
            } else {
                const uint8_t *key, *val; size_t klen, vlen;
                if (read_kv(f.data, f.len, &key, &klen, &val, &vlen) < 0) return -1;
                if (!utf8_ok(key, klen)) return REJECT(ctx, "a string is not valid UTF-8");
                if (put_json_string(b, key, klen) < 0 || buf_put(b, ":", 1) < 0) return -1;
                if (val == NULL) { if (buf_put(b, "null", 4) < 0) return -1; }
                else if ((rc = render_json(ctx, b, val, vlen, depth + 1)) != 0) return rc;
            }
        }
        if (rc < 0) return -1;
        return buf_put(b, array ? "]" : "}", 1);
    }
    default:
        return buf_put(b, "null", 4);
    }
}

/* A top-level attribute value into a string column. 0, 1 (reject) or -1. */
static int push_value(Ctx *ctx, Str *col, const uint8_t *p, size_t n) {
    AnyV a;
    char num[40];
    if (p == NULL) { a.kind = 0; }
    else if (read_any(p, n, &a) < 0) return -1;
    switch (a.kind) {
    case AV_STRING: return push_cut(ctx, col, a.data, a.len);
    case AV_INT:
        return str_push(col, num, format_int((int64_t)a.v, num)) < 0 ? -1 : 0;
    case AV_BOOL:
        return str_push(col, a.v ? "true" : "false", a.v ? 4 : 5) < 0 ? -1 : 0;
    case AV_DOUBLE: {
        double d; memcpy(&d, &a.v, 8);
        format_double(d, num, sizeof num);
        return str_push(col, num, strlen(num)) < 0 ? -1 : 0;
    }
    case AV_BYTES:
        if (put_base64(&col->data, a.data, a.len) < 0) return -1;
        return str_close(col) < 0 ? -1 : 0;
    case AV_ARRAY: case AV_KVLIST: {
        size_t before = col->data.len;
        int rc = render_json(ctx, &col->data, p, n, 0);
        if (rc != 0) { col->data.len = before; return rc; }
        if (col->data.len - before > ctx->max_value) {
            col->data.len = before;
            return REJECT(ctx, "an array/map attribute value is over %zu bytes as JSON; send less", ctx->max_value);
        }
        return str_close(col) < 0 ? -1 : 0;
    }
    default:
        return str_close(col) < 0 ? -1 : 0;
    }
}

/* Repeated KeyValue fields numbered `num` in message [p, p+n) into one map row. */
static int push_attrs(Ctx *ctx, Map *m, const uint8_t *p, size_t n, uint32_t num, int *has_type) {
    Rd r = {p, p + n};
    Field f;
    int rc;
    while ((rc = rd_field(&r, &f)) > 0) {
        if (!IS(f, num, 2)) continue;
        const uint8_t *key, *val; size_t klen, vlen;
        if (read_kv(f.data, f.len, &key, &klen, &val, &vlen) < 0) return -1;
        if (klen > ctx->max_key) return REJECT(ctx, "an attribute key is over %zu bytes", ctx->max_key);
        if (!utf8_ok(key, klen)) return REJECT(ctx, "a string is not valid UTF-8");
        if (str_push(&m->keys, (const char *)key, klen) < 0) return -1;
        if ((rc = push_value(ctx, &m->values, val, vlen)) != 0) return rc;
        if (has_type && klen == 17 && memcmp(key, "handoff.span.type", 17) == 0) *has_type = 1;
    }
    if (rc < 0) return -1;
    return map_close_row(m) < 0 ? -1 : 0;
}

/* ---------------------------------------------------------------- spans */
static const char *KINDS[] = {"Unspecified", "Internal", "Server", "Client", "Producer", "Consumer"};
static const char *STATUSES[] = {"Unset", "Ok", "Error"};

typedef struct {
    const uint8_t *trace, *span, *parent, *tstate, *name, *status_msg;
    size_t trace_n, span_n, parent_n, tstate_n, name_n, status_msg_n;
    uint64_t start, end; int32_t kind, status_code;
} SpanF;

#define MAX_ERRORS 5 /* rejected spans described in the partial-success message */

typedef struct {
    Cols *c; Ctx *ctx;
    Map res; /* this resource's attributes, rendered once: one row */
    int res_rejected; char res_reason[256];
    const uint8_t *service; size_t service_n;
    const uint8_t *scope, *scopev; size_t scope_n, scopev_n;
    SpanF span; /* the fields of the span being emitted */
    char errors[MAX_ERRORS][64 + 2 + sizeof ((Ctx *)0)->reason]; int n_errors; /* "label: reason" */
    Buf foreign; /* int64 row numbers of spans no SDK of ours typed */
    Py_ssize_t index, rows, rejected;
} State;

static int span_fields(const uint8_t *p, size_t n, SpanF *s) {
    Rd r = {p, p + n};
    Field f;
    int rc;
    memset(s, 0, sizeof *s);
    s->trace = s->span = s->parent = s->tstate = s->name = s->status_msg = p;
    while ((rc = rd_field(&r, &f)) > 0) {
        switch (f.num) {
        case 1: if (f.wt == 2) { s->trace = f.data; s->trace_n = f.len; } break;
        case 2: if (f.wt == 2) { s->span = f.data; s->span_n = f.len; } break;
        case 3: if (f.wt == 2) { s->tstate = f.data; s->tstate_n = f.len; } break;
        case 4: if (f.wt == 2) { s->parent = f.data; s->parent_n = f.len; } break;
        case 5: if (f.wt == 2) { s->name = f.data; s->name_n = f.len; } break;
        case 6: if (f.wt == 0) s->kind = (int32_t)f.v; break;
        case 7: if (f.wt == 1) s->start = f.v; break;
        case 8: if (f.wt == 1) s->end = f.v; break;
        case 15:
            if (f.wt == 2) {
                Rd sr = SUB(f);
                Field g;
                int src;
                s->status_msg = p; s->status_msg_n = 0; s->status_code = 0;
                while ((src = rd_field(&sr, &g)) > 0) {
                    if (IS(g, 2, 2)) { s->status_msg = g.data; s->status_msg_n = g.len; }
                    else if (IS(g, 3, 0)) s->status_code = (int32_t)g.v;
                }
                if (src < 0) return -1;
            }
            break;
        }
    }
    return rc;
}

/* Emit one span's row. 0 ok, 1 rejected (reason in ctx), -1 error. */
static int emit_span(State *st, const uint8_t *p, size_t n, int *has_type) {
    Cols *c = st->c; Ctx *ctx = st->ctx;
    int rc;
    if (span_fields(p, n, &st->span) < 0) return -1;
    SpanF s = st->span;
    if (st->res_rejected) return REJECT(ctx, "%s", st->res_reason);
    if ((rc = check_id(ctx, s.trace, s.trace_n, 16, "trace id", 0))) return rc;
    if ((rc = check_id(ctx, s.span, s.span_n, 8, "span id", 0))) return rc;
    if ((rc = check_id(ctx, s.parent, s.parent_n, 8, "parent span id", 1))) return rc;
    if ((rc = check_time(ctx, s.start, "start time", 0))) return rc;
    if ((rc = check_time(ctx, s.end, "end time", 1))) return rc;
    /* attributes, events, links: in this order, as the reference checks them */
    if ((rc = push_attrs(ctx, &c->sattr, p, n, 9, has_type))) return rc;
    Rd r = {p, p + n};
    Field f;
    while ((rc = rd_field(&r, &f)) > 0) {
        if (!IS(f, 11, 2)) continue;
        Rd er = SUB(f);
        Field g;
        uint64_t t = 0; const uint8_t *name = f.data; size_t name_n = 0;
        while ((rc = rd_field(&er, &g)) > 0) {
            if (IS(g, 1, 1)) t = g.v;
            else if (IS(g, 2, 2)) { name = g.data; name_n = g.len; }
        }
        if (rc < 0) return -1;
        if ((rc = check_time(ctx, t, "event time", 1))) return rc;
        if (buf_i64(&c->ev_ts, (int64_t)t) < 0) return -1;
        if ((rc = push_cut(ctx, &c->ev_name, name, name_n))) return rc;
        if ((rc = push_attrs(ctx, &c->ev_attr, f.data, f.len, 3, NULL))) return rc;
    }
    if (rc < 0) return -1;
    r = (Rd){p, p + n};
    while ((rc = rd_field(&r, &f)) > 0) {
        if (!IS(f, 13, 2)) continue;
        Rd lr = SUB(f);
        Field g;
        const uint8_t *tid = f.data, *sid = f.data, *ts = f.data; size_t tid_n = 0, sid_n = 0, ts_n = 0;
        while ((rc = rd_field(&lr, &g)) > 0) {
            if (IS(g, 1, 2)) { tid = g.data; tid_n = g.len; }
            else if (IS(g, 2, 2)) { sid = g.data; sid_n = g.len; }
            else if (IS(g, 3, 2)) { ts = g.data; ts_n = g.len; }
        }
        if (rc < 0) return -1;
        if ((rc = check_id(ctx, tid, tid_n, 16, "link trace id", 0))) return rc;
        if ((rc = check_id(ctx, sid, sid_n, 8, "link span id", 0))) return rc;
        if (push_hex(&c->ln_trace, tid, tid_n) < 0 || push_hex(&c->ln_span, sid, sid_n) < 0) return -1;
        if ((rc = push_cut(ctx, &c->ln_state, ts, ts_n))) return rc;
        if ((rc = push_attrs(ctx, &c->ln_attr, f.data, f.len, 4, NULL))) return rc;
    }
    if (rc < 0) return -1;
    if (buf_i32(&c->ev_off, (int32_t)(c->ev_ts.len / 8)) < 0) return -1;
    if (buf_i32(&c->ln_off, (int32_t)str_count(&c->ln_trace)) < 0) return -1;
    /* the row's scalar columns */
    if (push_hex(&c->s[C_TRACE], s.trace, s.trace_n) < 0 || push_hex(&c->s[C_SPAN], s.span, s.span_n) < 0
        || push_hex(&c->s[C_PARENT], s.parent, s.parent_n) < 0) return -1;
    if ((rc = push_cut(ctx, &c->s[C_TSTATE], s.tstate, s.tstate_n))) return rc;
    if ((rc = push_cut(ctx, &c->s[C_NAME], s.name, s.name_n))) return rc;
    const char *kind = (s.kind >= 0 && s.kind < 6) ? KINDS[s.kind] : KINDS[0];
    const char *status = (s.status_code >= 0 && s.status_code < 3) ? STATUSES[s.status_code] : STATUSES[0];
    if (str_push(&c->s[C_KIND], kind, strlen(kind)) < 0) return -1;
    if (str_push(&c->s[C_STATUS], status, strlen(status)) < 0) return -1;
    if ((rc = push_cut(ctx, &c->s[C_STATUSMSG], s.status_msg, s.status_msg_n))) return rc;
    if ((rc = push_cut(ctx, &c->s[C_SCOPE], st->scope, st->scope_n))) return rc;
    if ((rc = push_cut(ctx, &c->s[C_SCOPEV], st->scopev, st->scopev_n))) return rc;
    if (str_push(&c->s[C_SERVICE], (const char *)st->service, st->service_n) < 0) return -1;
    /* the resource row, copied */
    size_t nres = str_count(&st->res.keys);
    for (size_t i = 0; i < nres; i++) {
        int32_t *ko = (int32_t *)st->res.keys.off.p, *vo = (int32_t *)st->res.values.off.p;
        if (str_push(&c->rattr.keys, st->res.keys.data.p + ko[i], (size_t)(ko[i + 1] - ko[i])) < 0) return -1;
        if (str_push(&c->rattr.values, st->res.values.data.p + vo[i], (size_t)(vo[i + 1] - vo[i])) < 0) return -1;
    }
    if (map_close_row(&c->rattr) < 0) return -1;
    if (buf_i64(&c->ts, (int64_t)s.start) < 0) return -1;
    if (buf_i64(&c->dur, (int64_t)(s.end > s.start ? s.end - s.start : 0)) < 0) return -1;
    return 0;
}

/* Describe a rejected span (its fields were read before it was rejected) for the reply. */
static void add_error(State *st) {
    if (st->n_errors >= MAX_ERRORS) return;
    char label[64];
    SpanF *s = &st->span;
    if (s->span_n == 8) {
        char hex[17];
        for (int i = 0; i < 8; i++) { hex[2 * i] = HEX[s->span[i] >> 4]; hex[2 * i + 1] = HEX[s->span[i] & 15]; }
        hex[16] = 0;
        snprintf(label, sizeof label, "span #%zd %s", st->index, hex);
    } else {
        snprintf(label, sizeof label, "span #%zd", st->index);
    }
    snprintf(st->errors[st->n_errors++], sizeof st->errors[0], "%s: %s", label, st->ctx->reason);
}

static int do_span(State *st, const uint8_t *p, size_t n) {
    Buf *bufs[N_BUFS + 1];
    size_t marks[N_BUFS];
    all_bufs(st->c, bufs);
    for (int i = 0; bufs[i]; i++) marks[i] = bufs[i]->len;
    int has_type = 0;
    int rc = emit_span(st, p, n, &has_type);
    if (rc < 0) return -1;
    if (rc == 1) {
        for (int i = 0; bufs[i]; i++) bufs[i]->len = marks[i];
        st->rejected++;
        add_error(st);
    } else {
        if (!has_type && buf_i64(&st->foreign, (int64_t)st->rows) < 0) return -1;
        st->rows++;
    }
    st->index++;
    return 0;
}

static void map_free(Map *m) { free(m->off.p); free(m->keys.off.p); free(m->keys.data.p); free(m->values.off.p); free(m->values.data.p); }

/* One ResourceSpans message. */
static int do_resource_spans(State *st, const uint8_t *p, size_t n) {
    Ctx *ctx = st->ctx;
    Rd r = {p, p + n};
    Field f;
    int rc;
    /* the resource (last occurrence), rendered once */
    const uint8_t *res = NULL; size_t res_n = 0;
    while ((rc = rd_field(&r, &f)) > 0) if (IS(f, 1, 2)) { res = f.data; res_n = f.len; }
    if (rc < 0) return -1;
    map_free(&st->res);
    memset(&st->res, 0, sizeof st->res);
    if (map_init(&st->res) < 0) return -1;
    st->res_rejected = 0;
    rc = push_attrs(ctx, &st->res, res ? res : p, res ? res_n : 0, 1, NULL);
    if (rc < 0) return -1;
    if (rc == 1) {
        st->res_rejected = 1;
        snprintf(st->res_reason, sizeof st->res_reason, "resource: %s", ctx->reason);
        map_free(&st->res); memset(&st->res, 0, sizeof st->res);
        if (map_init(&st->res) < 0) return -1;
        /* the resource row still ends (empty): keep the map consistent */
        if (map_close_row(&st->res) < 0) return -1;
    }
    if (ctx->project) {
        /* drop the client's project, append ours (the token's) */
        Map m; memset(&m, 0, sizeof m);
        if (map_init(&m) < 0) return -1;
        size_t k = str_count(&st->res.keys);
        int32_t *ko = (int32_t *)st->res.keys.off.p, *vo = (int32_t *)st->res.values.off.p;
        for (size_t i = 0; i < k; i++) {
            size_t kl = (size_t)(ko[i + 1] - ko[i]);
            if (kl == 16 && memcmp(st->res.keys.data.p + ko[i], "handoffs.project", 16) == 0) continue;
            if (str_push(&m.keys, st->res.keys.data.p + ko[i], kl) < 0
                || str_push(&m.values, st->res.values.data.p + vo[i], (size_t)(vo[i + 1] - vo[i])) < 0) { map_free(&m); return -1; }
        }
        if (str_push(&m.keys, "handoffs.project", 16) < 0
            || str_push(&m.values, ctx->project, (size_t)ctx->project_len) < 0) { map_free(&m); return -1; }
        map_free(&st->res);
        st->res = m;
    }
    /* service.name: the first occurrence */
    st->service = (const uint8_t *)""; st->service_n = 0;
    {
        size_t k = str_count(&st->res.keys);
        int32_t *ko = (int32_t *)st->res.keys.off.p, *vo = (int32_t *)st->res.values.off.p;
        for (size_t i = 0; i < k; i++) {
            if ((size_t)(ko[i + 1] - ko[i]) == 12 && memcmp(st->res.keys.data.p + ko[i], "service.name", 12) == 0) {
                st->service = (const uint8_t *)st->res.values.data.p + vo[i];
                st->service_n = (size_t)(vo[i + 1] - vo[i]);
                break;
            }
        }
    }
    /* scope spans */
    r = (Rd){p, p + n};
    while ((rc = rd_field(&r, &f)) > 0) {
        if (!IS(f, 2, 2)) continue;
        Rd sr = SUB(f);
        Field g;
        const uint8_t *scope = NULL; size_t scope_n = 0;
        while ((rc = rd_field(&sr, &g)) > 0) if (IS(g, 1, 2)) { scope = g.data; scope_n = g.len; }
        if (rc < 0) return -1;
        st->scope = st->scopev = f.data; st->scope_n = st->scopev_n = 0;
        if (scope) {
            Rd cr = {scope, scope + scope_n};
            while ((rc = rd_field(&cr, &g)) > 0) {
                if (IS(g, 1, 2)) { st->scope = g.data; st->scope_n = g.len; }
                else if (IS(g, 2, 2)) { st->scopev = g.data; st->scopev_n = g.len; }
            }
            if (rc < 0) return -1;
        }
        sr = SUB(f);
        while ((rc = rd_field(&sr, &g)) > 0) {
            if (IS(g, 2, 2) && do_span(st, g.data, g.len) < 0) return -1;
        }
        if (rc < 0) return -1;
    }
    return rc;
}

/* Every ResourceSpans message of a request: 0, or -1 with a Python exception set. */
static int walk(State *st, const uint8_t *p, size_t n) {
    Rd r = {p, p + n};
    Field f;
    int rc;
    while ((rc = rd_field(&r, &f)) > 0) {
        if (IS(f, 1, 2) && do_resource_spans(st, f.data, f.len) < 0) return -1;
    }
    return rc < 0 ? -1 : 0;
}

/* ---------------------------------------------------------------- Python entry point */
static PyObject *bytes_of(Buf *b) { return PyBytes_FromStringAndSize(b->p ? b->p : "", (Py_ssize_t)b->len); }

static int put(PyObject *d, const char *key, Buf *b) {
    PyObject *v = bytes_of(b);
    if (!v) return -1;
    int rc = PyDict_SetItemString(d, key, v);
    Py_DECREF(v);
    return rc;
}

static int put_str(PyObject *d, const char *prefix, Str *s) {
    char key[96];
    snprintf(key, sizeof key, "%s.offsets", prefix);
    if (put(d, key, &s->off) < 0) return -1;
    snprintf(key, sizeof key, "%s.data", prefix);
    return put(d, key, &s->data);
}

static int put_map(PyObject *d, const char *prefix, Map *m) {
    char key[96];
    snprintf(key, sizeof key, "%s.offsets", prefix);
    if (put(d, key, &m->off) < 0) return -1;
    snprintf(key, sizeof key, "%s.key", prefix);
    if (put_str(d, key, &m->keys) < 0) return -1;
    snprintf(key, sizeof key, "%s.value", prefix);
    return put_str(d, key, &m->values);
}

static PyObject *decode(PyObject *self, PyObject *args) {
    Py_buffer in;
    PyObject *project = Py_None;
    Py_ssize_t max_value, max_key;
    int max_depth;
    if (!PyArg_ParseTuple(args, "y*Onni", &in, &project, &max_value, &max_key, &max_depth)) return NULL;
    Ctx ctx = {.max_value = (size_t)max_value, .max_key = (size_t)max_key, .max_depth = max_depth};
    if (project != Py_None) {
        ctx.project = PyUnicode_AsUTF8AndSize(project, &ctx.project_len);
        if (!ctx.project) { PyBuffer_Release(&in); return NULL; }
    }
    Cols c; memset(&c, 0, sizeof c);
    State st; memset(&st, 0, sizeof st);
    st.c = &c; st.ctx = &ctx;
    PyObject *result = NULL, *bufs = NULL, *errors = NULL, *foreign = NULL;
    int fail = 0;
    for (int i = 0; i < N_STR; i++) fail |= str_init(&c.s[i]);
    fail |= map_init(&c.rattr) | map_init(&c.sattr) | map_init(&c.ev_attr) | map_init(&c.ln_attr);
    fail |= buf_i32(&c.ev_off, 0) | str_init(&c.ev_name);
    fail |= buf_i32(&c.ln_off, 0) | str_init(&c.ln_trace) | str_init(&c.ln_span) | str_init(&c.ln_state);
    if (fail) goto done;
    Py_BEGIN_ALLOW_THREADS
    fail = walk(&st, (const uint8_t *)in.buf, (size_t)in.len);
    Py_END_ALLOW_THREADS
    if (fail) goto done;
    errors = PyList_New(0);
    foreign = PyList_New(0);
    if (!errors || !foreign) goto done;
    for (int i = 0; i < st.n_errors; i++) {
        PyObject *msg = PyUnicode_FromString(st.errors[i]);
        if (!msg || PyList_Append(errors, msg) < 0) { Py_XDECREF(msg); goto done; }
        Py_DECREF(msg);
    }
    for (size_t i = 0; i < st.foreign.len / 8; i++) {
        PyObject *row = PyLong_FromLongLong(((int64_t *)st.foreign.p)[i]);
        if (!row || PyList_Append(foreign, row) < 0) { Py_XDECREF(row); goto done; }
        Py_DECREF(row);
    }
    bufs = PyDict_New();
    if (!bufs) goto done;
    if (put(bufs, "Timestamp", &c.ts) < 0 || put(bufs, "Duration", &c.dur) < 0) goto done;
    for (int i = 0; i < N_STR; i++) if (put_str(bufs, STR_NAMES[i], &c.s[i]) < 0) goto done;
    if (put_map(bufs, "ResourceAttributes", &c.rattr) < 0 || put_map(bufs, "SpanAttributes", &c.sattr) < 0) goto done;
    if (put(bufs, "Events.offsets", &c.ev_off) < 0 || put(bufs, "Events.Timestamp.values", &c.ev_ts) < 0
        || put_str(bufs, "Events.Name", &c.ev_name) < 0 || put_map(bufs, "Events.Attributes", &c.ev_attr) < 0) goto done;
    if (put(bufs, "Links.offsets", &c.ln_off) < 0 || put_str(bufs, "Links.TraceId", &c.ln_trace) < 0
        || put_str(bufs, "Links.SpanId", &c.ln_span) < 0 || put_str(bufs, "Links.TraceState", &c.ln_state) < 0
        || put_map(bufs, "Links.Attributes", &c.ln_attr) < 0) goto done;
    result = Py_BuildValue("nnOOnO", st.rows, st.rejected, errors, foreign, ctx.truncated, bufs);
done:
    Py_XDECREF(bufs);
    Py_XDECREF(errors);
    Py_XDECREF(foreign);
    free(st.foreign.p);
    {
        Buf *all[N_BUFS + 1];
        all_bufs(&c, all);
        for (int i = 0; all[i]; i++) free(all[i]->p);
        map_free(&st.res);
    }
    PyBuffer_Release(&in);
    return result;
}

static PyMethodDef METHODS[] = {
    {"decode", decode, METH_VARARGS,
     "decode(data, project, max_value_bytes, max_key_bytes, max_depth) -> "
     "(rows, rejected, errors, foreign, truncated, buffers)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_otlp",
    "OTLP trace requests into Arrow column buffers (see otlp.py).", -1, METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__otlp(void) { return PyModule_Create(&MODULE); }
