package viewer

import (
	"context"
	"crypto/subtle"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/runs"
)

// Config configures a Viewer. Zero values take the defaults of DefaultConfig.
type Config struct {
	// Bucket is the bucket the ObjectStore reads (model locations s3://<Bucket>/... are read
	// through it).
	Bucket string
	// Key prefixes: uploads (<UploadPrefix><plate>/<id>_<channel>.<ext>), labels and error
	// records (<LabelsPrefix><plate>/<id>.json, .error.json, submission.csv), the thumbnail
	// cache (the only prefix written), model sets and decisions, training runs.
	UploadPrefix, LabelsPrefix, ThumbsPrefix, ModelsPrefix, RunsPrefix string

	// Access: HTTP basic auth with AccessKey / SecretKey (the deployment's S3 keys), or Token as
	// the password (any user name) or as "Authorization: Bearer <token>". At least one is required.
	AccessKey, SecretKey, Token string

	// ThumbSize is the longer side of grid thumbnails, ViewSize of the sample page's images
	// (never upscaled), in pixels.
	ThumbSize, ViewSize int
	// ThumbWorkers bounds concurrent renders (fetch + decode + encode of a sample).
	ThumbWorkers int
	// ReadWorkers bounds concurrent label reads of one page.
	ReadWorkers int
	// MaxObjectBytes refuses to decode larger channel objects.
	MaxObjectBytes int64
	// Decode are the channel decoder options (as the inference consumer's).
	Decode pipeline.DecodeOptions
	// RequestTimeout bounds the work of one request (not event streams).
	RequestTimeout time.Duration
	// IndexTTL is how long a listing of the bucket is reused (label events drop it earlier).
	IndexTTL time.Duration
	// PageSize is the most samples one plate page shows (more: pages).
	PageSize int
	// MaxRuns, MaxModels bound the records the models page reads.
	MaxRuns, MaxModels int
	// MaxStreams bounds open event streams; SSELifetime ends each after a while (the browser
	// reconnects); HeartbeatInterval keeps idle streams alive through proxies.
	MaxStreams        int
	SSELifetime       time.Duration
	HeartbeatInterval time.Duration

	// Events feeds the live updates (nil: pages are not live).
	Events EventSource
	// Model says where the serving model set lives (nil: the models page shows only S3's).
	Model ModelLocator

	Logger *slog.Logger
	Now    func() time.Time
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		UploadPrefix: "incoming/", LabelsPrefix: "labels/", ThumbsPrefix: "thumbs/",
		ModelsPrefix: runs.DefaultModelsPrefix, RunsPrefix: runs.DefaultRunsPrefix,
		ThumbSize: 160, ViewSize: 1024, ThumbWorkers: max(1, runtime.GOMAXPROCS(0)), ReadWorkers: 16,
		MaxObjectBytes: 256 << 20, RequestTimeout: 30 * time.Second, IndexTTL: 5 * time.Second,
		PageSize: 1536, MaxRuns: 50, MaxModels: 50,
		MaxStreams: 256, SSELifetime: 30 * time.Minute, HeartbeatInterval: 15 * time.Second,
	}
}

func (c *Config) fill() error {
	d := DefaultConfig()
	str := func(p *string, def string) {
		if *p == "" {
			*p = def
		}
	}
	str(&c.UploadPrefix, d.UploadPrefix)
	str(&c.LabelsPrefix, d.LabelsPrefix)
	str(&c.ThumbsPrefix, d.ThumbsPrefix)
	str(&c.ModelsPrefix, d.ModelsPrefix)
	str(&c.RunsPrefix, d.RunsPrefix)
	pos := func(p *int, def int) {
		if *p <= 0 {
			*p = def
		}
	}
	pos(&c.ThumbSize, d.ThumbSize)
	pos(&c.ViewSize, d.ViewSize)
	pos(&c.ThumbWorkers, d.ThumbWorkers)
	pos(&c.ReadWorkers, d.ReadWorkers)
	pos(&c.PageSize, d.PageSize)
	pos(&c.MaxRuns, d.MaxRuns)
	pos(&c.MaxModels, d.MaxModels)
	pos(&c.MaxStreams, d.MaxStreams)
	dur := func(p *time.Duration, def time.Duration) {
		if *p <= 0 {
			*p = def
		}
	}
	dur(&c.RequestTimeout, d.RequestTimeout)
	dur(&c.IndexTTL, d.IndexTTL)
	dur(&c.SSELifetime, d.SSELifetime)
	dur(&c.HeartbeatInterval, d.HeartbeatInterval)
	if c.MaxObjectBytes <= 0 {
		c.MaxObjectBytes = d.MaxObjectBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if (c.AccessKey == "") != (c.SecretKey == "") {
		return errors.New("viewer: the access key and the secret key go together")
	}
	if c.AccessKey == "" && c.Token == "" {
		return errors.New("viewer: no credentials: set the S3 access key and secret key or a token (web.token)")
	}
	for _, p := range []string{c.UploadPrefix, c.LabelsPrefix, c.ThumbsPrefix, c.ModelsPrefix, c.RunsPrefix} {
		if !strings.HasSuffix(p, "/") || strings.HasPrefix(p, "/") || strings.Contains(p, "..") {
			return errors.New("viewer: prefix " + p + " must end with '/' and not start with '/' or contain '..'")
		}
	}
	for _, p := range []string{c.UploadPrefix, c.LabelsPrefix, c.ModelsPrefix, c.RunsPrefix} {
		if strings.HasPrefix(p, c.ThumbsPrefix) || strings.HasPrefix(c.ThumbsPrefix, p) {
			return errors.New("viewer: the thumbnail prefix " + c.ThumbsPrefix + " must not overlap " + p)
		}
	}
	return c.Decode.Validate()
}

// Viewer serves the plate viewer. Create it with New, serve Handler, Close it when done.
type Viewer struct {
	cfg    Config
	store  ObjectStore
	log    *slog.Logger
	idx    *index
	sums   *summaries
	thumbs *thumbMaker
	hub    *hub
	tmpl   map[string]*template.Template
	static fs.FS
	mux    *http.ServeMux
	stop   func()
	closed chan struct{}
	// cards caches rendered grid cards (see cardHTML).
	cardsMu sync.Mutex
	cards   map[string]template.HTML
	once    sync.Once
	stats   struct {
		renders, thumbsCached atomic.Int64
	}
}

// New builds a viewer over store and subscribes to cfg.Events.
func New(store ObjectStore, cfg Config) (*Viewer, error) {
	if store == nil {
		return nil, errors.New("viewer: no object store")
	}
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	v := &Viewer{cfg: cfg, store: store, log: cfg.Logger, hub: newHub(cfg.MaxStreams), closed: make(chan struct{}), stop: func() {}}
	v.idx = newIndex(v)
	v.sums = &summaries{v: v, m: map[string]summaryEntry{}}
	v.cards = map[string]template.HTML{}
	v.thumbs = newThumbMaker(v)
	var err error
	if v.tmpl, err = parseTemplates(); err != nil {
		return nil, err
	}
	if v.static, err = fs.Sub(assets, "static"); err != nil {
		return nil, err
	}
	v.routes()
	if cfg.Events != nil {
		stop, err := cfg.Events.Subscribe(v.onEvent)
		if err != nil {
			return nil, err
		}
		v.stop = stop
	}
	return v, nil
}

// Close stops the event subscription and ends open event streams.
func (v *Viewer) Close() {
	v.once.Do(func() {
		v.stop()
		close(v.closed)
	})
}

func (v *Viewer) now() time.Time { return v.cfg.Now() }

// Handler serves every page and asset behind authentication, with the security headers.
func (v *Viewer) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
			"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if !v.authorized(r) {
			h.Set("WWW-Authenticate", `Basic realm="hpa plate viewer", charset="UTF-8"`)
			h.Set("Cache-Control", "no-store")
			http.Error(w, "401 unauthorized: sign in with the deployment's S3 access key and secret key, or the viewer token", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "the viewer is read-only", http.StatusMethodNotAllowed)
			return
		}
		v.mux.ServeHTTP(w, r)
	})
}

func eq(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// authorized checks basic auth (access key + secret key, or any user + token) or a bearer token.
func (v *Viewer) authorized(r *http.Request) bool {
	c := v.cfg
	if user, pass, ok := r.BasicAuth(); ok {
		keys := c.AccessKey != "" && eq(user, c.AccessKey)
		keys = keys && eq(pass, c.SecretKey)
		tok := c.Token != "" && eq(pass, c.Token)
		return keys || tok
	}
	if a := r.Header.Get("Authorization"); c.Token != "" && len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return eq(strings.TrimSpace(a[7:]), c.Token)
	}
	return false
}

// withTimeout bounds a page's work.
func (v *Viewer) withTimeout(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), v.cfg.RequestTimeout)
		defer cancel()
		h(w, r.WithContext(ctx))
	}
}

func (v *Viewer) routes() {
	m := http.NewServeMux()
	t := v.withTimeout
	m.HandleFunc("GET /{$}", t(v.servePlates))
	m.HandleFunc("GET /plates/{plate}", t(v.servePlate))
	m.HandleFunc("GET /plates/{plate}/submission.csv", t(v.serveCSV))
	m.HandleFunc("GET /plates/{plate}/cards/{id}", t(v.serveCard))
	m.HandleFunc("GET /plates/{plate}/samples/{id}", t(v.serveSample))
	m.HandleFunc("GET /plates/{plate}/samples/{id}/record.json", t(v.serveRecord))
	m.HandleFunc("GET /img/{plate}/{id}/{size}/{kind}", t(v.serveImage))
	m.HandleFunc("GET /models", t(v.serveModels))
	m.HandleFunc("GET /models/current/{file}", t(v.serveCurrentModelFile))
	m.HandleFunc("GET /models/v/{version}/{file}", t(v.serveModelFile))
	m.HandleFunc("GET /runs/{id}/{file}", t(v.serveRunFile))
	m.HandleFunc("GET /events", v.serveEvents)
	m.Handle("GET /static/", http.StripPrefix("/static/", v.staticHandler()))
	v.mux = m
}
