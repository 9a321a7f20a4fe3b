package viewer

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed templates/*.html static/*
var assets embed.FS

// assetVersion changes with the embedded static files, so their URLs can be cached for long.
var assetVersion = func() string {
	h := sha256.New()
	_ = fs.WalkDir(assets, "static", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := assets.ReadFile(p)
			h.Write([]byte(p))
			h.Write(b)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)[:6])
}()

var funcs = template.FuncMap{
	"asset": func(name string) string { return "/static/" + name + "?v=" + assetVersion },
	"pct":   func(x float64) string { return fmt.Sprintf("%.0f%%", 100*x) },
	"f3":    func(x float64) string { return fmt.Sprintf("%.3f", x) },
	"f4":    func(x float64) string { return fmt.Sprintf("%.4f", x) },
	// metric shows whole numbers (counts) without decimals.
	"metric": func(x float64) string {
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return fmt.Sprintf("%.0f", x)
		}
		return fmt.Sprintf("%.4f", x)
	},
	"f4p": func(x *float64) string {
		if x == nil {
			return "–"
		}
		return fmt.Sprintf("%.4f", *x)
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"iso": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	"eta": func(s *float64) string {
		if s == nil || *s < 0 || math.IsNaN(*s) {
			return "–"
		}
		return (time.Duration(*s) * time.Second).Round(time.Second).String()
	},
	"join":  strings.Join,
	"short": func(s string) string { return s[:min(len(s), 19)] },
	"bytes": func(n int64) string {
		switch {
		case n >= 1<<20:
			return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
		case n >= 1<<10:
			return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
		}
		return fmt.Sprintf("%d B", n)
	},
	"add": func(a, b int) int { return a + b },
	"eqi": func(a, b int) bool { return a == b },
}

// parseTemplates parses each page with the layout.
func parseTemplates() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, name := range []string{"plates", "plate", "sample", "models"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("viewer: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// staticHandler serves the embedded assets; a versioned URL (?v=<assetVersion>) is cached for a year.
func (v *Viewer) staticHandler() http.Handler {
	types := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Path
		if name == "" || strings.Contains(name, "..") || strings.Contains(name, "/") {
			http.NotFound(w, r)
			return
		}
		b, err := fs.ReadFile(v.static, name)
		ct, ok := types[path.Ext(name)]
		if err != nil || !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", ct)
		if r.URL.Query().Get("v") == assetVersion {
			w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "private, no-cache")
		}
		_, _ = w.Write(b)
	})
}
