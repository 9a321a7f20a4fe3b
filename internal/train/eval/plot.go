package eval

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Series is one curve of a plot.
type Series struct {
	Name  string
	X, Y  []float64
	Color color.RGBA
}

// Panel is one chart: a title and its curves, optionally with a log-scaled y axis.
type Panel struct {
	Title string
	XLab  string
	LogY  bool
	Lines []Series
}

var palette = []color.RGBA{{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255}, {148, 103, 189, 255}, {140, 86, 75, 255}}

// PlotPNG draws the panels stacked vertically into one PNG (e.g. loss curves per fold, and the LR).
func PlotPNG(w io.Writer, panels []Panel, width, panelHeight int) error {
	img := image.NewRGBA(image.Rect(0, 0, width, panelHeight*len(panels)))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	for i, p := range panels {
		drawPanel(img, image.Rect(0, i*panelHeight, width, (i+1)*panelHeight), p)
	}
	return png.Encode(w, img)
}

func drawPanel(img *image.RGBA, r image.Rectangle, p Panel) {
	const left, right, top, bottom = 70, 150, 24, 30
	plot := image.Rect(r.Min.X+left, r.Min.Y+top, r.Max.X-right, r.Max.Y-bottom)
	text(img, r.Min.X+left, r.Min.Y+16, p.Title, color.Black)
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	fy := func(v float64) float64 {
		if p.LogY {
			return math.Log10(max(v, 1e-12))
		}
		return v
	}
	for _, s := range p.Lines {
		for i := range s.X {
			if math.IsNaN(s.Y[i]) || math.IsInf(s.Y[i], 0) {
				continue
			}
			xmin, xmax = min(xmin, s.X[i]), max(xmax, s.X[i])
			ymin, ymax = min(ymin, fy(s.Y[i])), max(ymax, fy(s.Y[i]))
		}
	}
	gray := color.RGBA{200, 200, 200, 255}
	rectOutline(img, plot, color.RGBA{0, 0, 0, 255})
	if xmin > xmax { // no data
		text(img, plot.Min.X+10, plot.Min.Y+20, "no data", color.Black)
		return
	}
	if xmax == xmin {
		xmax = xmin + 1
	}
	if ymax == ymin {
		ymax, ymin = ymax+0.5, ymin-0.5
	}
	px := func(x float64) int { return plot.Min.X + int((x-xmin)/(xmax-xmin)*float64(plot.Dx()-1)) }
	py := func(y float64) int { return plot.Max.Y - 1 - int((fy(y)-ymin)/(ymax-ymin)*float64(plot.Dy()-1)) }
	for k := 0; k <= 4; k++ {
		yv := ymin + (ymax-ymin)*float64(k)/4
		y := plot.Max.Y - 1 - int(float64(k)/4*float64(plot.Dy()-1))
		for x := plot.Min.X + 1; x < plot.Max.X-1; x += 3 {
			img.Set(x, y, gray)
		}
		lab := yv
		if p.LogY {
			lab = math.Pow(10, yv)
		}
		text(img, r.Min.X+4, y+4, fmt.Sprintf("%.3g", lab), color.Black)
	}
	text(img, plot.Min.X, plot.Max.Y+16, fmt.Sprintf("%.4g", xmin), color.Black)
	text(img, plot.Max.X-40, plot.Max.Y+16, fmt.Sprintf("%.4g", xmax), color.Black)
	text(img, plot.Min.X+plot.Dx()/2-20, plot.Max.Y+16, p.XLab, color.Black)
	for i, s := range p.Lines {
		c := s.Color
		if c.A == 0 {
			c = palette[i%len(palette)]
		}
		for j := 1; j < len(s.X); j++ {
			line(img, px(s.X[j-1]), py(s.Y[j-1]), px(s.X[j]), py(s.Y[j]), c)
		}
		ly := r.Min.Y + top + 14 + 16*i
		for x := plot.Max.X + 8; x < plot.Max.X+24; x++ {
			img.Set(x, ly-4, c)
			img.Set(x, ly-3, c)
		}
		text(img, plot.Max.X+28, ly, s.Name, color.Black)
	}
}

func text(img *image.RGBA, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func rectOutline(img *image.RGBA, r image.Rectangle, c color.Color) {
	for x := r.Min.X; x < r.Max.X; x++ {
		img.Set(x, r.Min.Y, c)
		img.Set(x, r.Max.Y-1, c)
	}
	for y := r.Min.Y; y < r.Max.Y; y++ {
		img.Set(r.Min.X, y, c)
		img.Set(r.Max.X-1, y, c)
	}
}

func line(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for {
		img.Set(x0, y0, c)
		img.Set(x0, y0+1, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
