#include "tiff_mem.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <tiffio.h>

typedef struct {
	const uint8_t *data;
	uint64_t size, pos;
	int short_read;
	char *err;
	size_t errlen;
} memtiff;

static tmsize_t mt_read(thandle_t h, void *buf, tmsize_t n) {
	memtiff *m = (memtiff *)h;
	if (n <= 0) return 0;
	if (m->pos >= m->size) { m->short_read = 1; return 0; }
	uint64_t avail = m->size - m->pos;
	if ((uint64_t)n > avail) { m->short_read = 1; n = (tmsize_t)avail; }
	memcpy(buf, m->data + m->pos, (size_t)n);
	m->pos += (uint64_t)n;
	return n;
}

static tmsize_t mt_write(thandle_t h, void *buf, tmsize_t n) { (void)h; (void)buf; (void)n; return -1; }

static toff_t mt_seek(thandle_t h, toff_t off, int whence) {
	memtiff *m = (memtiff *)h;
	uint64_t base;
	switch (whence) {
	case SEEK_SET: base = 0; break;
	case SEEK_CUR: base = m->pos; break;
	case SEEK_END: base = m->size; break;
	default: return (toff_t)-1;
	}
	int64_t o = (int64_t)off;
	if (o < 0 && (uint64_t)(-o) > base) return (toff_t)-1;
	m->pos = base + (uint64_t)o;
	return (toff_t)m->pos;
}

static int mt_close(thandle_t h) { (void)h; return 0; }
static toff_t mt_size(thandle_t h) { return (toff_t)((memtiff *)h)->size; }
static int mt_map(thandle_t h, void **base, toff_t *size) { (void)h; (void)base; (void)size; return 0; }
static void mt_unmap(thandle_t h, void *base, toff_t size) { (void)h; (void)base; (void)size; }

static int mt_error(TIFF *tif, void *ud, const char *module, const char *fmt, va_list ap) {
	(void)tif;
	memtiff *m = (memtiff *)ud;
	if (m->err && m->errlen > 0 && m->err[0] == 0) {
		int k = 0;
		if (module && *module) k = snprintf(m->err, m->errlen, "%s: ", module);
		if (k < 0 || (size_t)k >= m->errlen) k = 0;
		vsnprintf(m->err + k, m->errlen - (size_t)k, fmt, ap);
	}
	return 1; /* handled: keep it off stderr */
}

static int mt_warning(TIFF *tif, void *ud, const char *module, const char *fmt, va_list ap) {
	(void)tif; (void)ud; (void)module; (void)fmt; (void)ap;
	return 1; /* warnings (unknown tags etc.) are not errors; silence them */
}

static void set_err(memtiff *m, const char *msg) {
	if (m->err && m->errlen > 0 && m->err[0] == 0) snprintf(m->err, m->errlen, "%s", msg);
}

static TIFF *open_mem(memtiff *m, int64_t maxalloc) {
	TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
	if (!opts) { set_err(m, "out of memory"); return NULL; }
	TIFFOpenOptionsSetErrorHandlerExtR(opts, mt_error, m);
	TIFFOpenOptionsSetWarningHandlerExtR(opts, mt_warning, m);
	if (maxalloc > 0) TIFFOpenOptionsSetMaxSingleMemAlloc(opts, (tmsize_t)maxalloc);
	/* "rm": read-only, no memory mapping (our map proc refuses anyway). */
	TIFF *tif = TIFFClientOpenExt("memory", "rm", (thandle_t)m, mt_read, mt_write, mt_seek,
	                              mt_close, mt_size, mt_map, mt_unmap, opts);
	TIFFOpenOptionsFree(opts);
	if (!tif) set_err(m, "not a readable TIFF");
	return tif;
}

static void get_info(TIFF *tif, hpa_tiff_info_t *info) {
	uint32_t w = 0, h = 0;
	uint16_t bps = 1, spp = 1, photo = 0, planar = PLANARCONFIG_CONTIG, sf = SAMPLEFORMAT_UINT, comp = 1;
	memset(info, 0, sizeof *info);
	TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w);
	TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h);
	TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bps);
	TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
	TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
	TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &sf);
	TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &comp);
	info->has_photometric = TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photo) ? 1 : 0;
	info->width = w; info->height = h; info->bps = bps; info->spp = spp;
	info->photometric = photo; info->planar = planar; info->sampleformat = sf;
	info->compression = comp; info->tiled = TIFFIsTiled(tif) ? 1 : 0;
}

int hpa_tiff_info(const uint8_t *data, size_t len, hpa_tiff_info_t *info,
                  char *err, size_t errlen, int *short_read) {
	memtiff m = {data, len, 0, 0, err, errlen};
	if (err && errlen) err[0] = 0;
	TIFF *tif = open_mem(&m, 64 << 20);
	if (!tif) { *short_read = m.short_read; return -1; }
	get_info(tif, info);
	TIFFClose(tif);
	*short_read = m.short_read;
	return 0;
}

static inline uint8_t sample8(const uint8_t *buf, size_t idx, int bps) {
	if (bps == 8) return buf[idx];
	uint32_t v = ((const uint16_t *)buf)[idx]; /* libtiff has swapped to host order */
	return (uint8_t)((v * 255u + 32767u) / 65535u);
}

int hpa_tiff_read(const uint8_t *data, size_t len, uint8_t *out, size_t outlen, int nout,
                  int64_t maxalloc, char *err, size_t errlen, int *short_read) {
	memtiff m = {data, len, 0, 0, err, errlen};
	if (err && errlen) err[0] = 0;
	int ret = -1;
	void *buf = NULL;
	TIFF *tif = open_mem(&m, maxalloc);
	if (!tif) goto done;
	hpa_tiff_info_t in;
	get_info(tif, &in);
	size_t w = in.width, h = in.height;
	int bps = in.bps, spp = in.spp;
	int contig = in.planar != PLANARCONFIG_SEPARATE;
	int invert = nout == 1 && in.has_photometric && in.photometric == PHOTOMETRIC_MINISWHITE;
	if ((nout != 1 && nout != 3) || (bps != 8 && bps != 16) || spp < nout || w == 0 || h == 0 ||
	    w > ((size_t)-1) / h / (size_t)nout || w * h * (size_t)nout > outlen) {
		set_err(&m, "unsupported sample layout or output buffer too small");
		goto done;
	}
	size_t bytes = (size_t)bps / 8;
	if (!in.tiled) {
		/* Whole strips at a time (TIFFReadEncodedStrip): lets libtiff use libdeflate for
		 * deflate strips, several times faster than scanline-by-scanline zlib. */
		uint32_t rps = 0;
		TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &rps);
		if (rps == 0 || rps > h) rps = (uint32_t)h;
		tmsize_t sl = TIFFScanlineSize(tif);
		size_t need = contig ? w * (size_t)spp * bytes : w * bytes;
		tmsize_t ss = TIFFStripSize(tif);
		if (sl <= 0 || (size_t)sl < need || ss <= 0 || (size_t)ss / (size_t)sl < rps) {
			set_err(&m, "bad scanline or strip size"); goto done;
		}
		buf = _TIFFmalloc(ss);
		if (!buf) { set_err(&m, "out of memory"); goto done; }
		size_t per_plane = (h + rps - 1) / rps;
		int nplanes = contig ? 1 : nout;
		for (int pl = 0; pl < nplanes; pl++)
			for (size_t k = 0; k < per_plane; k++) {
				size_t y0 = k * rps;
				size_t rows = h - y0 < rps ? h - y0 : rps;
				tmsize_t want = (tmsize_t)(rows * (size_t)sl);
				tmsize_t got = TIFFReadEncodedStrip(tif, (uint32_t)(pl * per_plane + k), buf, want);
				if (got < 0) goto done;
				if (got < want) { set_err(&m, "strip holds fewer rows than the image needs"); m.short_read = 1; goto done; }
				for (size_t r = 0; r < rows; r++) {
					const uint8_t *row = (const uint8_t *)buf + r * (size_t)sl;
					uint8_t *o = out + (y0 + r) * w * (size_t)nout;
					if (contig) {
						if (nout == 1 && bps == 8 && spp == 1 && !invert) { memcpy(o, row, w); continue; }
						for (size_t x = 0; x < w; x++)
							for (int s = 0; s < nout; s++) {
								uint8_t v = sample8(row, x * (size_t)spp + (size_t)s, bps);
								o[x * (size_t)nout + (size_t)s] = invert ? (uint8_t)(255 - v) : v;
							}
					} else {
						for (size_t x = 0; x < w; x++) {
							uint8_t v = sample8(row, x, bps);
							o[x * (size_t)nout + (size_t)pl] = invert ? (uint8_t)(255 - v) : v;
						}
					}
				}
			}
	} else {
		uint32_t tw = 0, th = 0;
		TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw);
		TIFFGetField(tif, TIFFTAG_TILELENGTH, &th);
		tmsize_t ts = TIFFTileSize(tif);
		size_t per = contig ? (size_t)spp : 1;
		if (tw == 0 || th == 0 || ts <= 0 || (size_t)ts / th / tw < per * bytes) {
			set_err(&m, "bad tile size"); goto done;
		}
		buf = _TIFFmalloc(ts);
		if (!buf) { set_err(&m, "out of memory"); goto done; }
		int nplanes = contig ? 1 : nout;
		for (int pl = 0; pl < nplanes; pl++)
			for (size_t ty = 0; ty < h; ty += th)
				for (size_t tx = 0; tx < w; tx += tw) {
					if (TIFFReadTile(tif, buf, (uint32_t)tx, (uint32_t)ty, 0, (uint16_t)pl) < 0) goto done;
					size_t rows = h - ty < th ? h - ty : th;
					size_t cols = w - tx < tw ? w - tx : tw;
					for (size_t r = 0; r < rows; r++) {
						uint8_t *o = out + ((ty + r) * w + tx) * (size_t)nout;
						for (size_t c = 0; c < cols; c++) {
							size_t base = (r * tw + c) * per;
							if (contig) {
								for (int s = 0; s < nout; s++) {
									uint8_t v = sample8((const uint8_t *)buf, base + (size_t)s, bps);
									o[c * (size_t)nout + (size_t)s] = invert ? (uint8_t)(255 - v) : v;
								}
							} else {
								uint8_t v = sample8((const uint8_t *)buf, base, bps);
								o[c * (size_t)nout + (size_t)pl] = invert ? (uint8_t)(255 - v) : v;
							}
						}
					}
				}
	}
	ret = 0;
done:
	if (buf) _TIFFfree(buf);
	if (tif) TIFFClose(tif);
	if (ret != 0 && err && errlen && err[0] == 0) snprintf(err, errlen, "read failed");
	*short_read = m.short_read;
	return ret;
}
