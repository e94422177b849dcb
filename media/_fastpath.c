/* media._fastpath: the per-viewer copy of a forwarded RTP packet, out of the interpreter.
 *
 * Why C through the CPython API (not cffi or Cython): it needs nothing to build beyond gcc and
 * the Python headers (no cffi at build time, no Cython in the build requirements), and the two
 * hot entry points are a vectorcall object and a METH_FASTCALL function, the cheapest calls
 * CPython has. libsrtp is NOT linked here: the caller passes the address of pylibsrtp's own
 * srtp_protect and each viewer's srtp_t, so this code drives the very session state (ROC,
 * replay window, keys) that pylibsrtp created; media/aiortc_internals.py obtains both and
 * check_internals() verifies the signature this file assumes.
 *
 *   Writer(ctx, protect, fd, family, host, port, keep, fallback)
 *       writer(payload, marker, pt, seq, ts, ssrc)  -- RFC 3550 header, RFC 3711 protect, send
 *       writer.burst([(payload, marker, pt, seq, ts, ssrc), ...])  -- the same, one sendmmsg
 *       writer.close()                                -- closes fd (owned: a dup)
 *   fan_out(consumers, packet, live) -> list of consumers left for Consumer.forward
 *   parse_rtcp(data) -> [(RR, ssrc, fraction_lost, lsr, dlsr) | (NACK, media_ssrc, [seq..]) |
 *                        (PLI, media_ssrc) | (REMB, bitrate, [ssrc..])]  -- a viewer's feedback,
 *       the C twin of media/consumer_rtcp.py's parse_rtcp (same events, same refusals)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SRTP_TRAILER (16 + 128) /* pylibsrtp's SRTP_MAX_TRAILER_LEN */
#define RTP_BUFFER (1500 + SRTP_TRAILER)
#define PAYLOAD_LIMIT (RTP_BUFFER - SRTP_TRAILER - 12)
#define BURST_MAX 64
/* The contract with media/*.py (entry points, their arguments, the event tuples): bump it here
 * and in media/fastpath.py together, so a stale build is refused rather than misused. */
#define INTERFACE 1

typedef int (*protect_fn)(void *ctx, void *rtp, int *len);

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    void *ctx;
    protect_fn protect;
    int fd;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    PyObject *keep;     /* the pylibsrtp Session: keeps ctx alive */
    PyObject *fallback; /* callable(data, addr): the event loop's queued sendto */
    PyObject *addr_obj; /* (host, port) for the fallback */
} Writer;

static PyTypeObject WriterType;
static PyObject *SrtpError; /* pylibsrtp.Error, set by set_error_class */
static PyObject *one;

/* Interned attribute names read from consumers and packets by fan_out. */
static PyObject *s_state, *s_send, *s_seq_off, *s_ts_off, *s_pt, *s_ssrc,
    *s_packets, *s_octets, *s_payload, *s_marker, *s_sequence_number, *s_timestamp;

static void
put_header(unsigned char *b, int marker, int pt, uint32_t seq, uint32_t ts, uint32_t ssrc)
{
    b[0] = 0x80;
    b[1] = (unsigned char)(((marker & 1) << 7) | (pt & 0x7f));
    b[2] = (unsigned char)(seq >> 8);
    b[3] = (unsigned char)seq;
    b[4] = (unsigned char)(ts >> 24);
    b[5] = (unsigned char)(ts >> 16);
    b[6] = (unsigned char)(ts >> 8);
    b[7] = (unsigned char)ts;
    b[8] = (unsigned char)(ssrc >> 24);
    b[9] = (unsigned char)(ssrc >> 16);
    b[10] = (unsigned char)(ssrc >> 8);
    b[11] = (unsigned char)ssrc;
}

/* Header + payload into buf, protected in place. Returns the protected length, or -1 with an
 * exception set. */
static int
build(Writer *w, unsigned char *buf, const char *payload, Py_ssize_t n, int marker, int pt,
      uint32_t seq, uint32_t ts, uint32_t ssrc)
{
    if (n > PAYLOAD_LIMIT) {
        PyErr_Format(PyExc_ValueError, "RTP payload of %zd bytes does not fit", n);
        return -1;
    }
    if (w->fd < 0) {
        PyErr_SetString(PyExc_ValueError, "writer is closed");
        return -1;
    }
    put_header(buf, marker, pt, seq, ts, ssrc);
    memcpy(buf + 12, payload, (size_t)n);
    int len = (int)(12 + n);
    int rc = w->protect(w->ctx, buf, &len);
    if (rc) {
        PyErr_Format(SrtpError ? SrtpError : PyExc_RuntimeError, "srtp_protect failed (%d)", rc);
        return -1;
    }
    return len;
}

/* The kernel refused (full buffer, ...): hand the datagram to the loop's transport, as the
 * Python writer does. */
static int
send_fallback(Writer *w, const unsigned char *buf, int len)
{
    if (w->fallback == Py_None) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    PyObject *data = PyBytes_FromStringAndSize((const char *)buf, len);
    if (data == NULL)
        return -1;
    PyObject *r = PyObject_CallFunctionObjArgs(w->fallback, data, w->addr_obj, NULL);
    Py_DECREF(data);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int
send_one(Writer *w, const unsigned char *buf, int len)
{
    /* MSG_DONTWAIT: never block the event loop, whatever the descriptor's own flags. */
    ssize_t sent =
        sendto(w->fd, buf, (size_t)len, MSG_DONTWAIT, (struct sockaddr *)&w->addr, w->addrlen);
    if (sent < 0)
        return send_fallback(w, buf, len);
    return 0;
}

static int
as_u32(PyObject *o, uint32_t *out)
{
    unsigned long v = PyLong_AsUnsignedLongMask(o);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* One packet from six Python arguments into buf; returns the protected length or -1. */
static int
build_args(Writer *w, unsigned char *buf, PyObject *const *args)
{
    uint32_t marker, pt, seq, ts, ssrc;
    if (as_u32(args[1], &marker) || as_u32(args[2], &pt) || as_u32(args[3], &seq) ||
        as_u32(args[4], &ts) || as_u32(args[5], &ssrc))
        return -1;
    if (PyBytes_CheckExact(args[0]))
        return build(w, buf, PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), (int)marker,
                     (int)pt, seq & 0xFFFF, ts, ssrc);
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return -1;
    int len = build(w, buf, view.buf, view.len, (int)marker, (int)pt, seq & 0xFFFF, ts, ssrc);
    PyBuffer_Release(&view);
    return len;
}

static PyObject *
writer_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Writer *w = (Writer *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 6 || (kwnames && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "write(payload, marker, pt, seq, ts, ssrc)");
        return NULL;
    }
    unsigned char buf[RTP_BUFFER];
    int len = build_args(w, buf, args);
    if (len < 0 || send_one(w, buf, len) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* writer.burst(items): many packets to this one viewer (a late joiner's cached GOP) in
 * sendmmsg calls of up to BURST_MAX datagrams; what the kernel does not take goes to the
 * fallback one by one. */
static PyObject *
writer_burst(Writer *w, PyObject *items)
{
    PyObject *seq = PySequence_Fast(items, "burst() needs a sequence of 6-tuples");
    if (seq == NULL)
        return NULL;
    Py_ssize_t total = PySequence_Fast_GET_SIZE(seq);
    PyObject **all = PySequence_Fast_ITEMS(seq);
    /* On the heap per call: a fallback runs Python code, which may burst another writer. */
    unsigned char(*bufs)[RTP_BUFFER] = PyMem_Malloc(sizeof(*bufs) * BURST_MAX);
    if (bufs == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    struct mmsghdr msgs[BURST_MAX];
    struct iovec iov[BURST_MAX];
    for (Py_ssize_t start = 0; start < total; start += BURST_MAX) {
        int count = (int)(total - start < BURST_MAX ? total - start : BURST_MAX);
        for (int i = 0; i < count; i++) {
            PyObject *item = all[start + i];
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 6) {
                PyErr_SetString(PyExc_TypeError, "burst() items are (payload, marker, pt, seq, ts, ssrc)");
                goto fail;
            }
            int len = build_args(w, bufs[i], &PyTuple_GET_ITEM(item, 0));
            if (len < 0)
                goto fail;
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = (size_t)len;
            memset(&msgs[i], 0, sizeof(msgs[i]));
            msgs[i].msg_hdr.msg_name = &w->addr;
            msgs[i].msg_hdr.msg_namelen = w->addrlen;
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int done = 0;
        while (done < count) {
            int r = sendmmsg(w->fd, msgs + done, (unsigned int)(count - done), MSG_DONTWAIT);
            if (r <= 0)
                break;
            done += r;
        }
        for (int i = done; i < count; i++)
            if (send_fallback(w, bufs[i], (int)iov[i].iov_len) < 0)
                goto fail;
    }
    PyMem_Free(bufs);
    Py_DECREF(seq);
    Py_RETURN_NONE;
fail:
    PyMem_Free(bufs);
    Py_DECREF(seq);
    return NULL;
}

static PyObject *
writer_close(Writer *w, PyObject *Py_UNUSED(ignored))
{
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
    }
    Py_RETURN_NONE;
}

static int
writer_init(Writer *w, PyObject *args, PyObject *kwds)
{
    unsigned long long ctx, protect;
    int fd, family, port;
    const char *host;
    PyObject *keep, *fallback;
    if (!PyArg_ParseTuple(args, "KKiisiOO", &ctx, &protect, &fd, &family, &host, &port, &keep,
                          &fallback))
        return -1;
    if (!ctx || !protect) {
        PyErr_SetString(PyExc_ValueError, "null srtp context or srtp_protect address");
        return -1;
    }
    if (fallback != Py_None && !PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable or None");
        return -1;
    }
    memset(&w->addr, 0, sizeof(w->addr));
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&w->addr;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            goto bad_host;
        w->addrlen = sizeof(*a);
    } else if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&w->addr;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            goto bad_host;
        w->addrlen = sizeof(*a);
    } else {
        PyErr_Format(PyExc_ValueError, "address family %d is not IPv4 or IPv6", family);
        return -1;
    }
    if (fd < 0) {
        PyErr_SetString(PyExc_ValueError, "negative file descriptor");
        return -1;
    }
    PyObject *addr_obj = Py_BuildValue("(si)", host, port);
    if (addr_obj == NULL)
        return -1;
    if (w->fd >= 0) /* __init__ called again: the old descriptor is ours to close */
        close(w->fd);
    w->ctx = (void *)(uintptr_t)ctx;
    w->protect = (protect_fn)(uintptr_t)protect;
    w->fd = fd;
    Py_INCREF(keep);
    Py_XSETREF(w->keep, keep);
    Py_INCREF(fallback);
    Py_XSETREF(w->fallback, fallback);
    Py_XSETREF(w->addr_obj, addr_obj);
    return 0;
bad_host:
    PyErr_Format(PyExc_ValueError, "not a numeric address: %s", host);
    return -1;
}

static PyObject *
writer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Writer *w = (Writer *)type->tp_alloc(type, 0);
    if (w == NULL)
        return NULL;
    w->vectorcall = writer_vectorcall;
    w->fd = -1;
    return (PyObject *)w;
}

static int
writer_traverse(Writer *w, visitproc visit, void *arg)
{
    Py_VISIT(w->keep);
    Py_VISIT(w->fallback);
    return 0;
}

static int
writer_clear(Writer *w)
{
    Py_CLEAR(w->keep);
    Py_CLEAR(w->fallback);
    Py_CLEAR(w->addr_obj);
    return 0;
}

static void
writer_dealloc(Writer *w)
{
    PyObject_GC_UnTrack(w);
    if (w->fd >= 0)
        close(w->fd);
    writer_clear(w);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyObject *
writer_get_closed(Writer *w, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(w->fd < 0);
}

static PyMethodDef writer_methods[] = {
    {"burst", (PyCFunction)writer_burst, METH_O,
     "burst(items): (payload, marker, pt, seq, ts, ssrc) tuples, sent with sendmmsg"},
    {"close", (PyCFunction)writer_close, METH_NOARGS, "close the writer's socket (a dup)"},
    {NULL},
};

static PyGetSetDef writer_getset[] = {
    {"closed", (getter)writer_get_closed, NULL, "True once close() ran", NULL},
    {NULL},
};

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "media._fastpath.Writer",
    .tp_basicsize = sizeof(Writer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "One viewer's RTP output: header, SRTP protect in place, sendto.",
    .tp_new = writer_new,
    .tp_init = (initproc)writer_init,
    .tp_dealloc = (destructor)writer_dealloc,
    .tp_traverse = (traverseproc)writer_traverse,
    .tp_clear = (inquiry)writer_clear,
    .tp_vectorcall_offset = offsetof(Writer, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_methods = writer_methods,
    .tp_getset = writer_getset,
};

/* Returns 1 if `consumer` was forwarded here, 0 if it is left to Consumer.forward, -1 on a
 * failure that must propagate (memory). Errors of the write itself return 0 (the Python path
 * then repeats the write and logs its exception, as for any viewer). */
static int
forward_one(PyObject *consumer, PyObject *live, const char *payload, Py_ssize_t n,
            PyObject *payload_len, int marker, uint32_t seq, uint32_t ts)
{
    int ok = 0;
    PyObject *state = NULL, *send = NULL, *seq_off = NULL, *ts_off = NULL,
             *pt = NULL, *ssrc = NULL, *packets = NULL, *octets = NULL, *v = NULL;
    uint32_t so, to, p, s;
    state = PyObject_GetAttr(consumer, s_state);
    if (state == NULL)
        goto clear;
    int is_live = state == live ? 1 : PyObject_RichCompareBool(state, live, Py_EQ);
    if (is_live != 1)
        goto clear;
    send = PyObject_GetAttr(consumer, s_send);
    if (send == NULL || Py_TYPE(send) != &WriterType)
        goto clear;
    if ((seq_off = PyObject_GetAttr(consumer, s_seq_off)) == NULL || as_u32(seq_off, &so) ||
        (ts_off = PyObject_GetAttr(consumer, s_ts_off)) == NULL || as_u32(ts_off, &to) ||
        (pt = PyObject_GetAttr(consumer, s_pt)) == NULL || as_u32(pt, &p) ||
        (ssrc = PyObject_GetAttr(consumer, s_ssrc)) == NULL || as_u32(ssrc, &s))
        goto clear;
    unsigned char buf[RTP_BUFFER];
    Writer *w = (Writer *)send;
    int len = build(w, buf, payload, n, marker, (int)p, (seq + so) & 0xFFFF, ts + to, s);
    if (len < 0 || send_one(w, buf, len) < 0)
        goto clear;
    ok = 1;
    /* consumer.packets += 1; consumer.octets += len(payload) */
    if ((packets = PyObject_GetAttr(consumer, s_packets)) == NULL)
        goto counters;
    if ((v = PyNumber_Add(packets, one)) == NULL ||
        PyObject_SetAttr(consumer, s_packets, v) < 0)
        goto counters;
    Py_CLEAR(v);
    if ((octets = PyObject_GetAttr(consumer, s_octets)) == NULL)
        goto counters;
    if ((v = PyNumber_Add(octets, payload_len)) == NULL ||
        PyObject_SetAttr(consumer, s_octets, v) < 0)
        goto counters;
    goto done;
counters:
    ok = -1; /* sent, but the counters could not be updated: propagate */
    goto done;
clear:
    PyErr_Clear();
done:
    Py_XDECREF(state);
    Py_XDECREF(send);
    Py_XDECREF(seq_off);
    Py_XDECREF(ts_off);
    Py_XDECREF(pt);
    Py_XDECREF(ssrc);
    Py_XDECREF(packets);
    Py_XDECREF(octets);
    Py_XDECREF(v);
    return ok;
}

/* fan_out(consumers, packet, live): forward `packet` to every consumer in state `live` whose
 * output is a Writer, exactly as Consumer.forward would: seq and ts shifted by the
 * consumer's offsets, its pt and ssrc, packets/octets counted. Returns the consumers it did
 * not handle, in order, for Consumer.forward. */
static PyObject *
fan_out(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "fan_out(consumers, packet, live)");
        return NULL;
    }
    PyObject *consumers = args[0], *packet = args[1], *live = args[2];
    if (!PyList_Check(consumers)) {
        PyErr_SetString(PyExc_TypeError, "fan_out needs a list of consumers");
        return NULL;
    }
    PyObject *rest = PyList_New(0);
    if (rest == NULL)
        return NULL;
    PyObject *payload = NULL, *marker_o = NULL, *seq_o = NULL, *ts_o = NULL, *plen = NULL;
    uint32_t marker, seq, ts;
    if ((payload = PyObject_GetAttr(packet, s_payload)) == NULL ||
        (marker_o = PyObject_GetAttr(packet, s_marker)) == NULL || as_u32(marker_o, &marker) ||
        (seq_o = PyObject_GetAttr(packet, s_sequence_number)) == NULL || as_u32(seq_o, &seq) ||
        (ts_o = PyObject_GetAttr(packet, s_timestamp)) == NULL || as_u32(ts_o, &ts))
        goto fail;
    int native = PyBytes_CheckExact(payload);
    if (native && (plen = PyLong_FromSsize_t(PyBytes_GET_SIZE(payload))) == NULL)
        goto fail;
    /* Iterate over a snapshot: a fallback call could, in principle, run code that edits the list. */
    Py_ssize_t count = PyList_GET_SIZE(consumers);
    PyObject *snapshot = PyList_GetSlice(consumers, 0, count);
    if (snapshot == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *c = PyList_GET_ITEM(snapshot, i);
        int r = native ? forward_one(c, live, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload),
                                     plen, (int)marker, seq, ts)
                       : 0;
        if (r < 0) {
            Py_DECREF(snapshot);
            goto fail;
        }
        if (r == 0 && PyList_Append(rest, c) < 0) {
            Py_DECREF(snapshot);
            goto fail;
        }
    }
    Py_DECREF(snapshot);
    Py_XDECREF(payload);
    Py_XDECREF(marker_o);
    Py_XDECREF(seq_o);
    Py_XDECREF(ts_o);
    Py_XDECREF(plen);
    return rest;
fail:
    Py_DECREF(rest);
    Py_XDECREF(payload);
    Py_XDECREF(marker_o);
    Py_XDECREF(seq_o);
    Py_XDECREF(ts_o);
    Py_XDECREF(plen);
    return NULL;
}


/* ------------------------------------------------------------------ RTCP in (a viewer's) */

enum { EV_RR = 0, EV_NACK = 1, EV_PLI = 2, EV_REMB = 3 };

static uint32_t
be32(const unsigned char *b)
{
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

static int
append_steal(PyObject *list, PyObject *item)
{
    if (item == NULL)
        return -1;
    int r = PyList_Append(list, item);
    Py_DECREF(item);
    return r;
}

/* Report blocks of an SR/RR (RFC 3550 §6.4.1-2): 24 bytes each. */
static int
parse_reports(PyObject *out, const unsigned char *b, Py_ssize_t n, int count)
{
    if (n < 24 * (Py_ssize_t)count)
        return 1;
    for (int i = 0; i < count; i++, b += 24)
        if (append_steal(out, Py_BuildValue("(iIiII)", EV_RR, be32(b), (int)b[4], be32(b + 16),
                                            be32(b + 20))) < 0)
            return -1;
    return 0;
}

/* One RTCP packet's payload (after the 4-byte header, padding removed). Returns 0, 1 for a
 * malformed packet (the whole datagram is dropped, as aiortc does), -1 on a Python error. */
static int
parse_one(PyObject *out, int type, int count, const unsigned char *b, Py_ssize_t n)
{
    if (type == 200) { /* SR: sender SSRC + 20 bytes of sender info, then report blocks */
        if (n < 24)
            return 1;
        return parse_reports(out, b + 24, n - 24, count);
    }
    if (type == 201) { /* RR: sender SSRC, then report blocks */
        if (n < 4)
            return 1;
        return parse_reports(out, b + 4, n - 4, count);
    }
    if (type == 205) { /* RTPFB (RFC 4585 §6.2): count is the FMT; 1 = generic NACK */
        if (n < 8 || n % 4)
            return 1;
        if (count != 1)
            return 0;
        PyObject *lost = PyList_New(0);
        if (lost == NULL)
            return -1;
        for (Py_ssize_t pos = 8; pos < n; pos += 4) {
            unsigned pid = ((unsigned)b[pos] << 8) | b[pos + 1];
            unsigned blp = ((unsigned)b[pos + 2] << 8) | b[pos + 3];
            if (append_steal(lost, PyLong_FromUnsignedLong(pid)) < 0)
                goto nack_fail;
            for (int d = 0; d < 16; d++)
                if ((blp >> d) & 1)
                    if (append_steal(lost, PyLong_FromUnsignedLong((pid + d + 1) & 0xFFFF)) < 0)
                        goto nack_fail;
        }
        return append_steal(out, Py_BuildValue("(iIN)", EV_NACK, be32(b + 4), lost)) < 0 ? -1 : 0;
    nack_fail:
        Py_DECREF(lost);
        return -1;
    }
    if (type == 206) { /* PSFB (RFC 4585 §6.3): 1 = PLI, 4 = FIR, 15 = application (REMB) */
        if (n < 8)
            return 1;
        if (count == 1 || count == 4)
            return append_steal(out, Py_BuildValue("(iI)", EV_PLI, be32(b + 4))) < 0 ? -1 : 0;
        if (count != 15)
            return 0;
        const unsigned char *fci = b + 8;
        Py_ssize_t m = n - 8;
        if (m < 8 || memcmp(fci, "REMB", 4) != 0 || m < 8 + 4 * (Py_ssize_t)fci[4])
            return 0; /* not a (whole) REMB: ignored, like any other application message */
        unsigned exponent = (fci[5] & 0xFC) >> 2;
        unsigned long mantissa =
            ((unsigned long)(fci[5] & 0x03) << 16) | ((unsigned)fci[6] << 8) | fci[7];
        /* 18-bit mantissa << 6-bit exponent can exceed 64 bits: shift as Python ints */
        PyObject *mo = PyLong_FromUnsignedLong(mantissa), *eo = PyLong_FromUnsignedLong(exponent);
        PyObject *bitrate = (mo && eo) ? PyNumber_Lshift(mo, eo) : NULL;
        Py_XDECREF(mo);
        Py_XDECREF(eo);
        PyObject *ssrcs = bitrate ? PyList_New(0) : NULL;
        if (ssrcs == NULL) {
            Py_XDECREF(bitrate);
            return -1;
        }
        for (int i = 0; i < fci[4]; i++)
            if (append_steal(ssrcs, PyLong_FromUnsignedLong(be32(fci + 8 + 4 * i))) < 0) {
                Py_DECREF(ssrcs);
                Py_DECREF(bitrate);
                return -1;
            }
        return append_steal(out, Py_BuildValue("(iNN)", EV_REMB, bitrate, ssrcs)) < 0 ? -1 : 0;
    }
    return 0; /* SDES, BYE, XR, APP: nothing a sender acts on */
}

static PyObject *
parse_rtcp(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *data = view.buf;
    Py_ssize_t len = view.len, pos = 0;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        goto done;
    while (pos < len) {
        if (len - pos < 4)
            goto malformed;
        int first = data[pos], type = data[pos + 1];
        Py_ssize_t n = (Py_ssize_t)(((unsigned)data[pos + 2] << 8) | data[pos + 3]) * 4;
        if ((first >> 6) != 2 || len - pos - 4 < n)
            goto malformed;
        const unsigned char *payload = data + pos + 4;
        pos += 4 + n;
        if (first & 0x20) { /* padding: the last byte counts the padding bytes */
            if (n == 0 || payload[n - 1] == 0 || payload[n - 1] > n)
                goto malformed;
            n -= payload[n - 1];
        }
        int r = parse_one(out, type, first & 0x1F, payload, n);
        if (r < 0) {
            Py_CLEAR(out);
            goto done;
        }
        if (r > 0)
            goto malformed;
    }
    goto done;
malformed:
    Py_SETREF(out, PyList_New(0));
done:
    PyBuffer_Release(&view);
    return out;
}

static PyObject *
set_error_class(PyObject *module, PyObject *cls)
{
    Py_INCREF(cls);
    Py_XSETREF(SrtpError, cls);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"fan_out", (PyCFunction)(void (*)(void))fan_out, METH_FASTCALL,
     "fan_out(consumers, packet, live) -> consumers left for Consumer.forward"},
    {"parse_rtcp", parse_rtcp, METH_O,
     "parse_rtcp(data) -> the RR / NACK / PLI / REMB events of a compound RTCP datagram"},
    {"set_error_class", set_error_class, METH_O, "the exception raised when srtp_protect fails"},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "media._fastpath",
    "Per-viewer RTP header rewrite, SRTP protect and send, in C.", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

#define INTERN(var, text)                                                                      \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                      \
        return NULL;

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    if ((one = PyLong_FromLong(1)) == NULL)
        return NULL;
    INTERN(s_state, "state");
    INTERN(s_send, "_send");
    INTERN(s_seq_off, "seq_off");
    INTERN(s_ts_off, "ts_off");
    INTERN(s_pt, "pt");
    INTERN(s_ssrc, "ssrc");
    INTERN(s_packets, "packets");
    INTERN(s_octets, "octets");
    INTERN(s_payload, "payload");
    INTERN(s_marker, "marker");
    INTERN(s_sequence_number, "sequence_number");
    INTERN(s_timestamp, "timestamp");
    if (PyType_Ready(&WriterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    Py_INCREF(&WriterType);
    if (PyModule_AddObject(m, "Writer", (PyObject *)&WriterType) < 0) {
        Py_DECREF(&WriterType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "PAYLOAD_LIMIT", PAYLOAD_LIMIT) < 0 ||
        PyModule_AddIntConstant(m, "BURST_MAX", BURST_MAX) < 0 ||
        PyModule_AddIntConstant(m, "INTERFACE", INTERFACE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
