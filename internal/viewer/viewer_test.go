package viewer

import (
	"bufio"
	"context"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// testPlate stores a plate "p" with one sample in each state:
//
//	s1 labeled (Nucleoplasm 0.9, Cytosol 0.7), s2 labeled (Mitochondria 0.55), s10 failed (corrupt),
//	s3 incomplete (no yellow), s4 pending (four channels, no result yet), and the plate CSV.
func testPlate(t testing.TB) *memStore {
	m := newMemStore()
	uploadSample(m, "p", "s1", 8, [4]uint8{10, 200, 40, 100})
	uploadSample(m, "p", "s2", 8, [4]uint8{1, 2, 3, 4})
	uploadSample(m, "p", "s10", 8, [4]uint8{1, 2, 3, 4})
	uploadSample(m, "p", "s4", 8, [4]uint8{5, 6, 7, 8})
	for _, n := range []string{"red", "green", "blue"} {
		m.put("incoming/p/s3_"+n+".png", flatPNG(8, 8, 9))
	}
	m.put("labels/p/s1.json", mkLabel(t, "s1", "v1", map[int]float64{0: 0.9, 25: 0.7}))
	m.put("labels/p/s2.json", mkLabel(t, "s2", "v2", map[int]float64{23: 0.55}))
	m.put("labels/p/s10.error.json", mkError(t, "s10", "corrupt"))
	m.put("labels/p/submission.csv", []byte("Id,Predicted\ns1,0 25\ns2,23\n"))
	uploadSample(m, "other plate", "a", 8, [4]uint8{1, 1, 1, 1})
	return m
}

// cardIDs returns the sample ids of the grid cards in page order.
func cardIDs(html string) []string {
	var ids []string
	for _, m := range regexp.MustCompile(`<li class="card [a-z]+" data-id="([^"]+)"`).FindAllStringSubmatch(html, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

func TestPlatesPage(t *testing.T) {
	_, srv := newTestViewer(t, testPlate(t), nil)
	code, _, body := get(t, srv, "/")
	if code != 200 {
		t.Fatalf("GET /: %d %s", code, body)
	}
	row := regexp.MustCompile(`(?s)<tr data-plate="p">.*?</tr>`).FindString(body)
	nums := regexp.MustCompile(`<td class="num[^"]*">(\d+)</td>`).FindAllStringSubmatch(row, -1)
	var got []string
	for _, n := range nums {
		got = append(got, n[1])
	}
	// samples, labeled, failed, incomplete, in progress
	if strings.Join(got, " ") != "5 2 1 1 1" {
		t.Errorf("plate p counts %v, want 5 2 1 1 1\n%s", got, row)
	}
	if !strings.Contains(row, "v1, v2") {
		t.Errorf("model versions missing: %s", row)
	}
	// Most recently active first: "other plate" was uploaded last.
	if i, j := strings.Index(body, `data-plate="other plate"`), strings.Index(body, `data-plate="p"`); i < 0 || j < 0 || i > j {
		t.Errorf("plates not sorted by activity (other plate at %d, p at %d)", i, j)
	}
	code, _, frag := get(t, srv, "/?fragment=rows")
	if code != 200 || strings.Contains(frag, "<html") || !strings.Contains(frag, `data-plate="p"`) {
		t.Errorf("rows fragment: %d %s", code, frag)
	}
}

func TestPlatePageGridFiltersAndCSV(t *testing.T) {
	_, srv := newTestViewer(t, testPlate(t), nil)
	code, _, body := get(t, srv, "/plates/p")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if got := strings.Join(cardIDs(body), " "); got != "s1 s2 s3 s4 s10" {
		t.Errorf("cards %q, want natural order s1 s2 s3 s4 s10", got)
	}
	// Thumbnails lazy-load; every image has an alt text; the failed sample shows its kind.
	imgs := regexp.MustCompile(`<img [^>]*>`).FindAllString(body, -1)
	lazy := 0
	for _, img := range imgs {
		if !regexp.MustCompile(`alt="[^"]+"`).MatchString(img) {
			t.Errorf("image without alt text: %s", img)
		}
		if strings.Contains(img, `loading="lazy"`) {
			lazy++
		}
	}
	if lazy != 3 { // s1, s2, s4 have composites; s3 (incomplete) and s10 (failed) placeholders
		t.Errorf("%d lazy thumbnails, want 3", lazy)
	}
	if !strings.Contains(body, "failed: corrupt") || !strings.Contains(body, "missing yellow") {
		t.Error("failed or incomplete sample not marked")
	}
	if !strings.Contains(body, `alt="Composite of sample s1: predicted Nucleoplasm, Cytosol"`) {
		t.Error("s1's alt text does not name its predicted classes")
	}
	for q, want := range map[string]string{
		"?class=25":               "s1",
		"?class=23&min=0.6":       "",
		"?class=23&min=0.5":       "s2",
		"?min=0.8":                "s1",
		"?max=0.6":                "s2",
		"?status=failed":          "s10",
		"?status=incomplete":      "s3",
		"?status=pending":         "s4",
		"?status=labeled&max=0.9": "s1 s2",
	} {
		code, _, body := get(t, srv, "/plates/p"+q)
		if got := strings.Join(cardIDs(body), " "); code != 200 || got != want {
			t.Errorf("filter %s: %d cards %q, want %q", q, code, got, want)
		}
	}
	for _, q := range []string{"?class=28", "?class=x", "?min=2", "?status=nope", "?page=0"} {
		if code, _, _ := get(t, srv, "/plates/p"+q); code != http.StatusBadRequest {
			t.Errorf("filter %s: %d, want 400", q, code)
		}
	}
	code, h, csv := get(t, srv, "/plates/p/submission.csv")
	if code != 200 || csv != "Id,Predicted\ns1,0 25\ns2,23\n" || !strings.Contains(h.Get("Content-Disposition"), "attachment") {
		t.Errorf("csv: %d %q %v", code, csv, h)
	}
	if code, _, _ := get(t, srv, "/plates/nope"); code != 404 {
		t.Errorf("unknown plate: %d", code)
	}
}

func TestPaging(t *testing.T) {
	m := newMemStore()
	for i := range 7 {
		uploadSample(m, "big", "x"+string(rune('a'+i)), 4, [4]uint8{1, 2, 3, 4})
	}
	_, srv := newTestViewer(t, m, func(c *Config) { c.PageSize = 3 })
	_, _, p1 := get(t, srv, "/plates/big")
	_, _, p3 := get(t, srv, "/plates/big?page=3")
	if a, b := strings.Join(cardIDs(p1), " "), strings.Join(cardIDs(p3), " "); a != "xa xb xc" || b != "xg" {
		t.Errorf("pages: %q, %q", a, b)
	}
	if !strings.Contains(p1, `rel="next"`) || strings.Contains(p1, `rel="prev"`) {
		t.Error("page 1 pager links")
	}
}

func TestSamplePage(t *testing.T) {
	m := testPlate(t)
	_, srv := newTestViewer(t, m, nil)
	code, _, body := get(t, srv, "/plates/p/samples/s1")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	for _, want := range []string{
		`<li data-class-id="0">Nucleoplasm</li>`, `<li data-class-id="25">Cytosol</li>`,
		`data-class-id="0" data-p="0.9" data-threshold="0.5"`, // the bar and its threshold
		`<td class="num p">0.9</td>`, `id="model-version">v1<`, "sha256:abab", "seresnext_tiny",
		`rel="next" id="next" href="/plates/p/samples/s2"`, "s1_green.png",
		`/img/p/s1/view/composite?v=`, `/img/p/s1/view/yellow?v=`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("sample page lacks %q", want)
		}
	}
	if n := len(regexp.MustCompile(`<g class="row`).FindAllString(body, -1)); n != labels.NumClasses {
		t.Errorf("%d bars, want %d", n, labels.NumClasses)
	}
	_, _, failed := get(t, srv, "/plates/p/samples/s10")
	if !strings.Contains(failed, `id="error-kind">corrupt<`) || !strings.Contains(failed, "incoming/p/s10_green.png") {
		t.Error("the failed sample's page does not show its error record")
	}
	_, _, inc := get(t, srv, "/plates/p/samples/s3")
	if !strings.Contains(inc, "yellow not available") || !strings.Contains(inc, "waits for its missing channels") {
		t.Error("the incomplete sample's page does not say what is missing")
	}
	code, _, rec := get(t, srv, "/plates/p/samples/s1/record.json")
	if l, err := labels.ParseLabel([]byte(rec)); code != 200 || err != nil || l.SampleID != "s1" {
		t.Errorf("record.json: %d %v", code, err)
	}
}

func TestComposite(t *testing.T) {
	mk := func(v uint8) pipeline.Plane { return pipeline.Plane{W: 1, H: 1, Pix: []uint8{v}} }
	for _, c := range []struct {
		r, g, b, y uint8
		want       [3]uint8
	}{
		{0, 0, 0, 0, [3]uint8{0, 0, 0}},
		{0, 0, 0, 200, [3]uint8{100, 100, 0}}, // ER alone is yellow
		{0, 255, 0, 0, [3]uint8{0, 255, 0}},   // protein is green
		{0, 0, 255, 0, [3]uint8{0, 0, 255}},   // nucleus is blue
		{10, 200, 40, 101, [3]uint8{60, 250, 40}},
		{250, 250, 7, 255, [3]uint8{255, 255, 7}}, // saturates
	} {
		img := Composite([4]pipeline.Plane{mk(c.r), mk(c.g), mk(c.b), mk(c.y)})
		if got := [3]uint8(img.Pix[:3]); got != c.want || img.Pix[3] != 255 {
			t.Errorf("r%d g%d b%d y%d: %v, want %v", c.r, c.g, c.b, c.y, img.Pix, c.want)
		}
	}
}

func TestThumbnailsRenderOnceAndCache(t *testing.T) {
	m := testPlate(t)
	v, srv := newTestViewer(t, m, nil)
	_, _, body := get(t, srv, "/plates/p")
	url := regexp.MustCompile(`src="(/img/p/s1/thumb/composite\?v=[0-9a-f]+)"`).FindStringSubmatch(body)
	if url == nil {
		t.Fatal("no thumbnail URL for s1")
	}
	code, h, img := get(t, srv, url[1])
	if code != 200 || h.Get("Content-Type") != "image/png" || !strings.Contains(h.Get("Cache-Control"), "immutable") {
		t.Fatalf("thumbnail: %d %v", code, h)
	}
	pic, err := png.Decode(strings.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	// s1's channels are flat red 10, green 200, blue 40, yellow 100: composite (60, 250, 40).
	r, g, b, _ := pic.At(3, 3).RGBA()
	if r>>8 != 60 || g>>8 != 250 || b>>8 != 40 || pic.Bounds().Dx() != 8 {
		t.Errorf("composite pixel (%d %d %d), size %v; want (60 250 40) at 8 px (no upscaling)", r>>8, g>>8, b>>8, pic.Bounds())
	}
	cached := m.keys("thumbs/p/s1/")
	if len(cached) != 1 || !strings.HasSuffix(cached[0], "/composite-16.png") {
		t.Fatalf("thumbnail cache %v", cached)
	}
	// The sample page's view renders all five images in one decode.
	get(t, srv, "/plates/p/samples/s1")
	if code, _, _ := get(t, srv, strings.Replace(url[1], "thumb/composite", "view/green", 1)); code != 200 {
		t.Fatalf("view green: %d", code)
	}
	if n := len(m.keys("thumbs/p/s1/")); n != 6 {
		t.Errorf("%d cached images, want 6 (thumb + five views)", n)
	}
	before := m.getCount("incoming/p/s1_green.png")
	if before != 2 || v.stats.renders.Load() != 2 {
		t.Errorf("green channel read %d times, %d renders; want 2 and 2", before, v.stats.renders.Load())
	}
	// A second viewer (a restart) serves from the S3 cache without decoding.
	v2, srv2 := newTestViewer(t, m, nil)
	for _, k := range []string{"thumb/composite", "view/composite", "view/red", "view/yellow"} {
		if code, _, _ := get(t, srv2, strings.Replace(url[1], "thumb/composite", k, 1)); code != 200 {
			t.Errorf("%s: %d", k, code)
		}
	}
	if got := m.getCount("incoming/p/s1_green.png"); got != before || v2.stats.renders.Load() != 0 {
		t.Errorf("cached images re-decoded: %d reads, %d renders", got-before, v2.stats.renders.Load())
	}
	// Conditional requests get 304.
	req, _ := http.NewRequest("GET", srv2.URL+url[1], nil)
	req.SetBasicAuth(testKey, testSecret)
	req.Header.Set("If-None-Match", h.Get("ETag"))
	if resp, err := srv2.Client().Do(req); err != nil || resp.StatusCode != 304 {
		t.Errorf("If-None-Match: %v %v", err, resp)
	}
	// A re-upload of a channel makes a new version (new URL, new render).
	m.put("incoming/p/s1_green.png", flatPNG(8, 8, 0))
	v2.idx.invalidate("p")
	_, _, body = get(t, srv2, "/plates/p")
	url2 := regexp.MustCompile(`src="(/img/p/s1/thumb/composite\?v=[0-9a-f]+)"`).FindStringSubmatch(body)
	if url2 == nil || url2[1] == url[1] {
		t.Fatalf("version did not change: %v", url2)
	}
	_, _, img2 := get(t, srv2, url2[1])
	pic2, err := png.Decode(strings.NewReader(img2))
	if err != nil {
		t.Fatal(err)
	}
	if _, g, _, _ := pic2.At(0, 0).RGBA(); g>>8 != 50 {
		t.Errorf("after re-upload green = %d, want 0 + 100/2 = 50", g>>8)
	}
	// Images of unusable samples: 422 for a missing channel, 404 for unknown kinds and samples.
	_, _, inc := get(t, srv2, "/plates/p/samples/s3")
	u3 := regexp.MustCompile(`/img/p/s3/view/red\?v=[0-9a-f]+`).FindString(inc)
	if code, _, _ := get(t, srv2, u3); u3 == "" || code != 200 {
		t.Errorf("incomplete sample's red channel: %q %d", u3, code)
	}
	if code, _, _ := get(t, srv2, strings.Replace(u3, "view/red", "view/composite", 1)); code != http.StatusUnprocessableEntity {
		t.Errorf("composite of an incomplete sample: %d, want 422", code)
	}
	for _, p := range []string{"/img/p/s1/thumb/red", "/img/p/s1/huge/composite", "/img/p/nope/view/red"} {
		if code, _, _ := get(t, srv2, p); code != 404 {
			t.Errorf("%s: %d, want 404", p, code)
		}
	}
}

func TestThumbnailDecodesTIFFAnd16Bit(t *testing.T) {
	m := newMemStore()
	// The project's decoders read every channel: a 16-bit PNG for green (65535 -> 255), a TIFF
	// for blue, an RGB TIFF for yellow ("rg": (R+G+1)/2 = (0+0+1)/2 = 0), a PNG for red.
	m.put("incoming/q/t_green.png", pngGray16(4, 4, 65535))
	m.put("incoming/q/t_red.png", flatPNG(4, 4, 0))
	m.put("incoming/q/t_blue.tif", tiffGray(4, 4, 7))
	m.put("incoming/q/t_yellow.tiff", tiffRGB(4, 4, 0, 0, 200))
	_, srv := newTestViewer(t, m, nil)
	_, _, body := get(t, srv, "/plates/q")
	u := regexp.MustCompile(`/img/q/t/thumb/composite\?v=[0-9a-f]+`).FindString(body)
	code, _, b := get(t, srv, u)
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	pic, err := png.Decode(strings.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if r, g, bl, _ := pic.At(1, 1).RGBA(); r>>8 != 0 || g>>8 != 255 || bl>>8 != 7 {
		t.Errorf("16-bit composite pixel %d %d %d", r>>8, g>>8, bl>>8)
	}
}

func TestUnauthorizedEverywhere(t *testing.T) {
	_, srv := newTestViewer(t, testPlate(t), func(c *Config) { c.Token = "tok-123" })
	paths := []string{"/", "/?fragment=rows", "/plates/p", "/plates/p/submission.csv", "/plates/p/cards/s1",
		"/plates/p/samples/s1", "/plates/p/samples/s1/record.json", "/img/p/s1/thumb/composite", "/img/p/s1/view/red",
		"/models", "/models/current/curves.png", "/models/v/v1/manifest.json", "/runs/r1/curves.png", "/events",
		"/static/app.js", "/static/style.css", "/static/icon.svg", "/static/failed.svg", "/favicon.ico", "/nope", "/plates/..%2F..%2Fetc"}
	type cred struct {
		name string
		set  func(*http.Request)
	}
	bad := []cred{
		{"none", func(*http.Request) {}},
		{"wrong secret", func(r *http.Request) { r.SetBasicAuth(testKey, "nope") }},
		{"secret as user", func(r *http.Request) { r.SetBasicAuth(testSecret, testKey) }},
		{"empty", func(r *http.Request) { r.SetBasicAuth("", "") }},
		{"wrong bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok-12") }},
		{"key as bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+testSecret) }},
	}
	good := []cred{
		{"keys", func(r *http.Request) { r.SetBasicAuth(testKey, testSecret) }},
		{"token as password", func(r *http.Request) { r.SetBasicAuth("anyone", "tok-123") }},
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok-123") }},
	}
	do := func(path string, c cred) *http.Response {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		c.set(req)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := srv.Client().Do(req.WithContext(ctx))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		resp.Body.Close()
		return resp
	}
	for _, p := range paths {
		for _, c := range bad {
			resp := do(p, c)
			if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("%s with %s credentials: %d, want 401 with a Basic challenge", p, c.name, resp.StatusCode)
			}
			checkSecurityHeaders(t, p, resp.Header)
		}
	}
	for _, c := range good {
		for _, p := range []string{"/", "/plates/p", "/static/app.js"} {
			if resp := do(p, c); resp.StatusCode != 200 {
				t.Errorf("%s with %s: %d", p, c.name, resp.StatusCode)
			} else {
				checkSecurityHeaders(t, p, resp.Header)
			}
		}
	}
	// Writes are refused even when signed in.
	req, _ := http.NewRequest("POST", srv.URL+"/plates/p", strings.NewReader("x"))
	req.SetBasicAuth(testKey, testSecret)
	if resp, err := srv.Client().Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %v %v", err, resp)
	}
	if _, err := New(newMemStore(), DefaultConfig()); err == nil {
		t.Error("a viewer without credentials was created")
	}
}

func checkSecurityHeaders(t *testing.T, path string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") ||
		!strings.Contains(csp, "default-src 'none'") {
		t.Errorf("%s: CSP %q", path, csp)
	}
	if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Frame-Options") != "DENY" {
		t.Errorf("%s: headers %v", path, h)
	}
}

func TestNoInlineScript(t *testing.T) {
	_, srv := newTestViewer(t, testPlate(t), nil)
	for _, p := range []string{"/", "/plates/p", "/plates/p/samples/s1", "/plates/p/samples/s10", "/models"} {
		_, _, body := get(t, srv, p)
		for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(body, -1) {
			if !strings.Contains(tag, `src="/static/`) {
				t.Errorf("%s: inline script %s", p, tag)
			}
		}
		if regexp.MustCompile(`\son[a-z]+=`).MatchString(body) || strings.Contains(body, " style=") {
			t.Errorf("%s: inline event handler or style attribute", p)
		}
	}
}

func TestKeyValidation(t *testing.T) {
	m := testPlate(t)
	m.put("secret/p/x_red.png", []byte("top secret"))
	_, srv := newTestViewer(t, m, nil)
	for _, p := range []string{
		"/plates/..", "/plates/..%2Fsecret", "/plates/p%2F..%2F..%2Fsecret", "/plates/%2Fetc", "/plates/a%5Cb",
		"/plates/p/samples/..", "/plates/p/samples/a%2Fb", "/plates/p%00/samples/s1", "/img/..%2Fsecret/x/view/red",
		"/plates/p/samples/s1%0A/record.json", "/events?plate=..%2Fx",
	} {
		// Without following redirects: the mux answers "/plates/.." with a redirect to the
		// cleaned path, which is fine.
		req, _ := http.NewRequest("GET", srv.URL+p, nil)
		req.SetBasicAuth(testKey, testSecret)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, body := resp.StatusCode, string(b)
		if code != 400 && code != 404 && code != 301 && code != 307 {
			t.Errorf("%s: %d, want 400, 404 or a redirect to the cleaned path", p, code)
		}
		if strings.Contains(body, "top secret") {
			t.Errorf("%s leaked an object outside the prefixes", p)
		}
	}
	for _, c := range []struct {
		name  string
		slash bool
		ok    bool
	}{{"plate 1", true, true}, {"a/b", true, true}, {"a/b", false, false}, {"../x", true, false}, {"a//b", true, false},
		{"./a", true, false}, {"a\\b", true, false}, {"a\x00", true, false}, {"", true, false}, {"ü-ok", false, true}} {
		if err := checkName(c.name, c.slash); (err == nil) != c.ok {
			t.Errorf("checkName(%q, %v) = %v", c.name, c.slash, err)
		}
	}
	for _, c := range []struct {
		key string
		ok  bool
	}{{"thumbs/p/x.png", true}, {"thumbs/../labels/x", false}, {"labels/x", false}, {"/thumbs/x", false}, {"thumbs/a//b", false}, {"thumbs/./a", false}} {
		if err := keyUnder(c.key, "thumbs/"); (err == nil) != c.ok {
			t.Errorf("keyUnder(%q) = %v", c.key, err)
		}
	}
}

// fakeEvents is an EventSource driven by the test.
type fakeEvents struct{ fn func(LabelEvent) }

func (f *fakeEvents) Subscribe(fn func(LabelEvent)) (func(), error) { f.fn = fn; return func() {}, nil }

func TestLiveEvents(t *testing.T) {
	m := testPlate(t)
	ev := &fakeEvents{}
	_, srv := newTestViewer(t, m, func(c *Config) { c.Events = ev; c.IndexTTL = time.Hour; c.HeartbeatInterval = 50 * time.Millisecond })
	_, _, body := get(t, srv, "/plates/p")
	if len(cardIDs(body)) != 5 {
		t.Fatal("setup")
	}
	req, _ := http.NewRequest("GET", srv.URL+"/events?plate=p", nil)
	req.SetBasicAuth(testKey, testSecret)
	resp, err := srv.Client().Do(req)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		t.Fatalf("events: %v %v", err, resp)
	}
	defer resp.Body.Close()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// A new sample is uploaded and labeled; the listing is an hour old, the event refreshes it.
	uploadSample(m, "p", "s5", 8, [4]uint8{1, 2, 3, 4})
	m.put("labels/p/s5.json", mkLabel(t, "s5", "v2", map[int]float64{7: 0.8}))
	ev.fn(LabelEvent{Kind: "label", Plate: "other plate", SampleID: "a"}) // filtered out
	ev.fn(LabelEvent{Kind: "label", Plate: "p", SampleID: "s5"})
	deadline := time.After(5 * time.Second)
	var data string
	for data == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("stream ended")
			}
			if strings.HasPrefix(l, "data: ") && strings.Contains(l, "sample_id") {
				data = strings.TrimPrefix(l, "data: ")
			}
		case <-deadline:
			t.Fatal("no event")
		}
	}
	var got LabelEvent
	if err := json.Unmarshal([]byte(data), &got); err != nil || got.SampleID != "s5" || got.Plate != "p" {
		t.Fatalf("event %q", data)
	}
	code, _, card := get(t, srv, "/plates/p/cards/s5?class=7")
	var c struct {
		ID, HTML, Before string
		Matches          bool
		Counts           map[string]int
	}
	if err := json.Unmarshal([]byte(card), &c); err != nil || code != 200 {
		t.Fatalf("card: %d %v %s", code, err, card)
	}
	if !c.Matches || c.Counts["labeled"] != 3 || c.Counts["samples"] != 6 || !strings.Contains(c.HTML, `data-id="s5"`) ||
		!strings.Contains(c.HTML, "Golgi apparatus") || c.Before != "s10" {
		t.Errorf("card %+v", c)
	}
	if _, _, card := get(t, srv, "/plates/p/cards/s5?class=8"); !strings.Contains(card, `"matches":false`) {
		t.Errorf("card with a filter it does not pass: %s", card)
	}
	// Heartbeats keep the stream alive.
	for beat := false; !beat; {
		select {
		case l := <-lines:
			beat = l == ": keep-alive"
		case <-time.After(5 * time.Second):
			t.Fatal("no heartbeat")
		}
	}
}

func TestEventStreamLimit(t *testing.T) {
	_, srv := newTestViewer(t, testPlate(t), func(c *Config) { c.MaxStreams = 1 })
	req, _ := http.NewRequest("GET", srv.URL+"/events", nil)
	req.SetBasicAuth(testKey, testSecret)
	resp, err := srv.Client().Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatal(err, resp)
	}
	defer resp.Body.Close()
	if code, _, _ := get(t, srv, "/events"); code != http.StatusServiceUnavailable {
		t.Errorf("second stream: %d, want 503", code)
	}
}

// slowStore delays every Get.
type slowStore struct {
	*memStore
	delay time.Duration
}

func (s slowStore) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.memStore.Get(ctx, key, max)
}

// A page over a slow store ends at the request timeout without reading every label.
func TestBoundedWorkPerRequest(t *testing.T) {
	m := newMemStore()
	for i := range 200 {
		id := "s" + string(rune('a'+i/26)) + string(rune('a'+i%26))
		m.put("labels/p/"+id+".json", mkLabel(t, id, "v1", map[int]float64{1: 0.9}))
	}
	_, srv := newTestViewer(t, slowStore{m, 20 * time.Millisecond}, func(c *Config) {
		c.RequestTimeout, c.ReadWorkers = 300*time.Millisecond, 2
	})
	t0 := time.Now()
	code, _, _ := get(t, srv, "/")
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("the plates page took %v with a 300ms request timeout", d)
	}
	reads := 0
	for _, k := range m.keys("labels/") {
		reads += m.getCount(k)
	}
	if reads >= 200 {
		t.Errorf("%d label reads after the timeout, want fewer than 200 (code %d)", reads, code)
	}
}

// The parsed labels of a plate survive a restart in the thumbnail cache: a new viewer reads one
// index object instead of every label, and only the labels that changed since.
func TestLabelIndexAfterRestart(t *testing.T) {
	m := newMemStore()
	var ids []string
	for i := range 40 {
		id := "s" + strconv.Itoa(i)
		ids = append(ids, id)
		m.put("labels/p/"+id+".json", mkLabel(t, id, "v1", map[int]float64{i % 28: 0.9}))
	}
	labelReads := func() int {
		n := 0
		for _, id := range ids {
			n += m.getCount("labels/p/" + id + ".json")
		}
		return n
	}
	_, srv1 := newTestViewer(t, m, nil)
	_, _, page1 := get(t, srv1, "/plates/p")
	if labelReads() != 40 || len(m.keys("thumbs/p/_labels.json")) != 1 {
		t.Fatalf("first view: %d label reads, index %v", labelReads(), m.keys("thumbs/"))
	}
	idxReads := m.getCount("thumbs/p/_labels.json") // the first viewer looked for it too
	_, srv2 := newTestViewer(t, m, nil)
	_, _, page2 := get(t, srv2, "/plates/p")
	if labelReads() != 40 || m.getCount("thumbs/p/_labels.json") != idxReads+1 {
		t.Errorf("after a restart: %d label reads (want none more), %d index reads (want 1)", labelReads()-40, m.getCount("thumbs/p/_labels.json")-idxReads)
	}
	if page1 != page2 {
		t.Error("the page from the index differs from the page from the labels")
	}
	// A relabeled sample is read again; its new prediction shows.
	m.put("labels/p/s3.json", mkLabel(t, "s3", "v2", map[int]float64{27: 0.95}))
	_, srv3 := newTestViewer(t, m, nil)
	_, _, page3 := get(t, srv3, "/plates/p")
	if got := m.getCount("labels/p/s3.json"); got != 2 || labelReads() != 41 {
		t.Errorf("s3 read %d times, %d label reads in all; want 2 and 41", got, labelReads())
	}
	if !strings.Contains(page3, "Rods &amp; rings") {
		t.Error("the relabeled sample's new class is not shown")
	}
	// A damaged index is ignored.
	m.put("thumbs/p/_labels.json", []byte(`{"schema":"hpa.viewer.labels/v1","entries":{"labels/p/s1.json":{"etag":"x","predicted":[99]}}}`))
	_, srv4 := newTestViewer(t, m, nil)
	if code, _, _ := get(t, srv4, "/plates/p"); code != 200 {
		t.Errorf("with a damaged index: %d", code)
	}
}
