package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/synth"
	"github.com/hpa-plates/hpa/internal/testenv"
)

// chromiumPath finds Debian's chromium (HPA_CHROMIUM overrides). Without one the test skips
// with a notice, unless env CI is set (scripts/setup.sh installs it there): then it fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HPA_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "" {
		t.Skip("chromium not found (scripts/setup.sh installs it; or set HPA_CHROMIUM); CI unset, so skipping the browser test")
	}
	t.Fatal("chromium not found: scripts/setup.sh installs Debian's chromium (or set HPA_CHROMIUM)")
	return ""
}

// newBrowser starts headless Chromium with the flags that work as root on a closed network.
func newBrowser(t *testing.T, bin string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1280, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium %s: %v", bin, err)
	}
	return ctx
}

// screenshotDir is where the test keeps a screenshot per page: HPA_VIEWER_SCREENSHOTS, else the
// test's artifact directory (kept with go test -artifacts).
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("HPA_VIEWER_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.ArtifactDir()
}

// The plate viewer of `hpa up` in a real browser: a plate uploaded through the S3 API is shown
// with its thumbnails; a sample page shows the probabilities of its label JSON; a sample uploaded
// while the page is open appears without a reload; keyboard navigation and alt texts work.
func TestViewerInBrowser(t *testing.T) {
	bin := chromiumPath(t)
	testenv.NativeLibrary(t, "HPA_ORT_LIBRARY", ".cache/libonnxruntime.so")
	root := testenv.RepoRoot(t)
	manifest := filepath.Join(root, "models", "bundled", "manifest.json")
	m, err := model.ReadManifest(manifest)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	const n = 12 // uploaded first; one more arrives while the page is open
	synthDir := t.TempDir()
	if _, err := synth.Generate(context.Background(), synth.Options{Out: synthDir, Samples: n + 1, Size: m.InputSize, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	truth, err := labels.ReadTargetsFile(filepath.Join(synthDir, "train.csv"))
	if err != nil {
		t.Fatal(err)
	}
	r := startUp(t, t.TempDir(), manifest)
	if r.ep.ViewerURL == "" {
		t.Fatal("endpoints.json has no viewer_url")
	}
	const plate = "plate-7"
	upload := func(id string) {
		for _, ch := range pipeline.ChannelNames {
			name := id + "_" + ch + ".png"
			b, err := os.ReadFile(filepath.Join(synthDir, "train", name))
			if err != nil {
				t.Fatal(err)
			}
			if err := r.store.Put(context.Background(), r.ep.UploadPrefix+plate+"/"+name, b, "image/png"); err != nil {
				t.Fatal(err)
			}
		}
	}
	ids := make([]string, 0, n)
	for _, row := range truth[:n] {
		upload(row.ID)
		ids = append(ids, row.ID)
	}
	labelOf := map[string]labels.Label{}
	for _, id := range ids {
		l, err := labels.ParseLabel(r.waitLabel(t, plate, id))
		if err != nil {
			t.Fatal(err)
		}
		labelOf[id] = l
	}
	tLabeled := time.Now()

	ctx := newBrowser(t, bin)
	shots := screenshotDir(t)
	shot := func(name string) {
		t.Helper()
		b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	eval := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return s
	}
	// poll waits until js is true; errors while a page is replaced by the next one are retried.
	poll := func(what, js string, timeout time.Duration) {
		t.Helper()
		var last error
		for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!(`+js+`)`))
			if err == nil && ok {
				return
			}
			last = err
		}
		t.Fatalf("waiting for %s (%v): page %.400s", what, last, eval(`document.body ? document.body.innerText : ""`))
	}
	key := func(k string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.KeyEvent(k)); err != nil {
			t.Fatal(err)
		}
	}
	navigate := func(url string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
			t.Fatal(err)
		}
	}

	// Without credentials: the 401 and its Basic challenge make headless Chromium (which has no
	// prompt to show) give up on the page.
	if err := chromedp.Do(ctx, chromedp.Navigate(r.ep.ViewerURL+"plates/"+plate)); err == nil || !strings.Contains(err.Error(), "AUTH") {
		t.Fatalf("unauthenticated navigation: %v (page: %q)", err, eval(`document.body ? document.body.innerText : ""`))
	}
	// Signed in as a browser does after the basic-auth prompt: the header on every request
	// (pages, scripts, images, the event stream).
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(r.ep.AccessKey+":"+r.ep.SecretKey))
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
		return err
	})); err != nil {
		t.Fatal(err)
	}

	// The plate list.
	navigate(r.ep.ViewerURL)
	poll("the plate row", `document.querySelector('tr[data-plate="`+plate+`"]') !== null`, 10*time.Second)
	row := eval(`document.querySelector('tr[data-plate="` + plate + `"]').innerText`)
	if !strings.Contains(row, m.Version) || !strings.Contains(row, strconv.Itoa(n)) {
		t.Errorf("plate row %q lacks the model version or the sample count", row)
	}
	poll("live updates", `document.body.dataset.live === "on"`, 10*time.Second)
	shot("plates")

	// The plate page: one lazy thumbnail per sample, every image with an alt text, all decoded.
	tPlate := time.Now()
	navigate(r.ep.ViewerURL + "plates/" + plate)
	poll("the plate page's script", `document.body.dataset.ready === "1"`, 10*time.Second)
	if got := eval(`String(document.querySelectorAll('#grid img.thumb[loading="lazy"]').length)`); got != strconv.Itoa(n) {
		t.Errorf("%s lazy thumbnails, want %d", got, n)
	}
	eval(`window.scrollTo(0, document.body.scrollHeight); ""`)
	poll("every thumbnail decoded", `Array.from(document.querySelectorAll('#grid img.thumb')).every(i => i.complete && i.naturalWidth > 0)`, 60*time.Second)
	if bad := eval(`Array.from(document.images).filter(i => !i.alt || !i.alt.trim()).map(i => i.src).join(" ")`); bad != "" {
		t.Errorf("images without alt text: %s", bad)
	}
	wantOrder := strings.Join(ids, " ")
	gotOrder := eval(`Array.from(document.querySelectorAll('#grid li.card')).map(li => li.dataset.id).join(" ")`)
	if strings.Join(sortedNatural(strings.Fields(gotOrder)), " ") != strings.Join(sortedNatural(strings.Fields(wantOrder)), " ") {
		t.Errorf("grid %q, want the samples %q", gotOrder, wantOrder)
	}
	eval(`window.scrollTo(0, 0); ""`)
	shot("plate")
	platePage := time.Since(tPlate)

	// Keyboard: the first Tab reaches the skip link; arrows move between cards; Enter opens one.
	eval(`document.activeElement && document.activeElement.blur(); ""`)
	key(kb.Tab)
	if got := eval(`document.activeElement.className + "|" + document.activeElement.textContent`); got != "skip|Skip to content" {
		t.Errorf("first Tab focused %q, want the skip link", got)
	}
	cards := strings.Fields(gotOrder)
	eval(`document.querySelector('#grid a.card-link').focus(); ""`)
	key(kb.ArrowRight)
	key(kb.ArrowRight)
	key(kb.ArrowLeft)
	if got := eval(`document.activeElement.closest('li').dataset.id`); got != cards[1] {
		t.Fatalf("after Right Right Left the focus is on %q, want %q", got, cards[1])
	}
	key(kb.Enter)
	poll("the sample page", `document.body.dataset.page === "sample" && document.body.dataset.ready === "1"`, 10*time.Second)
	sample := cards[1]
	if got := eval(`document.querySelector('[data-sample]').dataset.sample`); got != sample {
		t.Fatalf("Enter opened %q, want %q", got, sample)
	}

	// The sample page: the probabilities shown are the label's; the predicted set is the label's.
	poll("the sample images", `Array.from(document.querySelectorAll('img.zoomable')).every(i => i.complete && i.naturalWidth > 0)`, 60*time.Second)
	if got := eval(`String(document.querySelectorAll('.panels img.zoomable').length)`); got != "5" {
		t.Errorf("%s images, want the composite and four channels", got)
	}
	var shown [][2]string
	if err := json.Unmarshal([]byte(eval(`JSON.stringify(Array.from(document.querySelectorAll('#probs tbody tr')).map(tr => [tr.dataset.classId, tr.querySelector('td.p').textContent]))`)), &shown); err != nil {
		t.Fatal(err)
	}
	l := labelOf[sample]
	if len(shown) != labels.NumClasses {
		t.Fatalf("%d probabilities shown, want %d", len(shown), labels.NumClasses)
	}
	for k, s := range shown {
		p, err := strconv.ParseFloat(s[1], 64)
		if err != nil || s[0] != strconv.Itoa(k) || math.Abs(p-float64(l.Probabilities[k].P)) > 1e-9 {
			t.Errorf("class %s: shown %s, label %v", s[0], s[1], l.Probabilities[k].P)
		}
	}
	var wantPred []string
	for _, c := range l.Predicted {
		wantPred = append(wantPred, c.Name)
	}
	if got := eval(`Array.from(document.querySelectorAll('#predicted li[data-class-id]')).map(li => li.textContent).join("|")`); got != strings.Join(wantPred, "|") {
		t.Errorf("predicted %q, label %q", got, wantPred)
	}
	if got := eval(`document.getElementById('model-version').textContent`); got != m.Version {
		t.Errorf("model version %q, want %q", got, m.Version)
	}
	// Zoom with the keyboard scales all five panels alike.
	key("+")
	if got := eval(`Array.from(document.querySelectorAll('img.zoomable')).map(i => i.style.transform).join("|")`); strings.Count(got, "scale(1.5)") != 5 {
		t.Errorf("zoom: %q", got)
	}
	key("0")
	shot("sample")
	// k goes to the previous sample, u back to the plate.
	key("k")
	poll("the previous sample", `document.body.dataset.ready === "1" && document.querySelector('[data-sample]').dataset.sample === "`+cards[0]+`"`, 10*time.Second)
	key("u")
	poll("the plate page", `document.body.dataset.page === "plate" && document.body.dataset.ready === "1"`, 10*time.Second)

	// Live: a sample uploaded while the plate page is open appears without a reload.
	poll("live updates", `document.body.dataset.live === "on"`, 10*time.Second)
	eval(`window.__notReloaded = true; ""`)
	newID := truth[n].ID
	tUpload := time.Now()
	upload(newID)
	poll("the new sample's card", `document.querySelector('#grid li[data-id="`+newID+`"]') !== null`, 90*time.Second)
	live := time.Since(tUpload)
	if eval(`String(window.__notReloaded === true)`) != "true" {
		t.Error("the page reloaded instead of updating")
	}
	poll("the labeled count", `document.querySelector('[data-count="labeled"]').textContent === "`+strconv.Itoa(n+1)+`"`, 10*time.Second)
	if got := eval(`document.querySelector('#grid li[data-id="` + newID + `"] img').alt`); !strings.HasPrefix(got, "Composite of sample "+newID) {
		t.Errorf("new card alt %q", got)
	}
	poll("the new thumbnail", `(i => i && i.complete && i.naturalWidth > 0)(document.querySelector('#grid li[data-id="`+newID+`"] img'))`, 30*time.Second)
	// A sample with a corrupt channel appears live too, marked failed with its error kind.
	badID := "zz-corrupt"
	for _, ch := range pipeline.ChannelNames {
		data := []byte("\x89PNG\r\n\x1a\nnot really a png")
		if ch != "green" {
			data, _ = os.ReadFile(filepath.Join(synthDir, "train", newID+"_"+ch+".png"))
		}
		if err := r.store.Put(context.Background(), r.ep.UploadPrefix+plate+"/"+badID+"_"+ch+".png", data, "image/png"); err != nil {
			t.Fatal(err)
		}
	}
	var rec labels.ErrorRecord
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b, err := r.store.Get(context.Background(), r.ep.LabelsPrefix+plate+"/"+badID+".error.json", 0)
		if err == nil {
			if rec, err = labels.ParseErrorRecord(b); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no error record for %s: %v", badID, err)
		}
	}
	poll("the failed sample's card", `(li => li && li.classList.contains("failed") && li.innerText.includes("failed: `+rec.Kind+`"))(document.querySelector('#grid li[data-id="`+badID+`"]'))`, 30*time.Second)
	poll("the failed count", `document.querySelector('[data-count="failed"]').textContent === "1"`, 10*time.Second)
	if got := eval(`document.getElementById('shown').textContent`); !strings.HasPrefix(got, fmt.Sprintf("Showing %d of %d ", n+2, n+2)) {
		t.Errorf("the count of shown samples was not updated: %q", got)
	}
	if got := eval(`document.querySelector('#grid li[data-id="` + badID + `"] img').alt`); got != "Sample "+badID+" failed: "+rec.Kind {
		t.Errorf("failed card alt %q", got)
	}
	if eval(`String(window.__notReloaded === true)`) != "true" {
		t.Error("the page reloaded instead of updating")
	}
	shot("plate-live")

	// Filters: the first predicted class of the first sample selects a subset containing it.
	cls := l.Predicted[0].ClassID
	eval(`location.href`)
	poll("the filter form", `document.getElementById('f-class') !== null`, 10*time.Second)
	eval(`(s => { s.value = "` + strconv.Itoa(cls) + `"; s.dispatchEvent(new Event('change')); })(document.getElementById('f-class')); ""`)
	// The filter navigates: wait for the new document's grid (with the sample whose class it is),
	// not just the new URL, or a loaded machine reads the grid before the page has rendered it.
	poll("the filtered grid", `location.search.includes("class=`+strconv.Itoa(cls)+`") && document.readyState === "complete" && `+
		`document.querySelector('#grid li.card[data-id="`+sample+`"]') !== null`, 10*time.Second)
	filtered := strings.Fields(eval(`Array.from(document.querySelectorAll('#grid li.card')).map(li => li.dataset.id).join(" ")`))
	want := 0
	for _, id := range append(ids, newID) {
		if l, ok := labelOf[id]; ok && containsInt(l.PredictedIDs(), cls) {
			want++
		}
	}
	if !containsStr(filtered, sample) || (want > 0 && len(filtered) < want) || len(filtered) > n+1 {
		t.Errorf("class %d filter shows %v", cls, filtered)
	}

	// The models page shows the serving model set, its report and curves, and empty states.
	navigate(r.ep.ViewerURL + "models")
	poll("the models page", `document.getElementById('current-version') !== null`, 10*time.Second)
	if got := eval(`document.getElementById('current-version').textContent`); got != m.Version {
		t.Errorf("models page version %q, want %q", got, m.Version)
	}
	poll("the curves", `(i => i && i.complete && i.naturalWidth > 0)(document.querySelector('figure.curves img'))`, 10*time.Second)
	if eval(`String(document.getElementById('runs-empty') !== null)`) != "true" {
		t.Error("no empty state for training runs")
	}
	shot("models")
	t.Logf("labeled %d samples in %v; plate page with %d thumbnails loaded in %v; live sample shown %v after its upload; browser part %v; screenshots in %s",
		n, tLabeled.Sub(t0).Round(time.Millisecond), n, platePage.Round(time.Millisecond), live.Round(time.Millisecond),
		time.Since(tLabeled).Round(time.Millisecond), shots)
}

func containsInt(s []int, x int) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func containsStr(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func sortedNatural(s []string) []string {
	out := append([]string(nil), s...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
