package eval

import (
	"bytes"
	"image/color"
	"image/png"
	"math"
	"testing"
)

func TestPlotPNG(t *testing.T) {
	var xs, loss, lr []float64
	// Two cosine cycles of 50 steps from 0.1 down to 0, the shape of a cyclic-cosine schedule.
	for i := 0; i < 100; i++ {
		xs = append(xs, float64(i))
		loss = append(loss, 0.7/float64(1+i/10))
		lr = append(lr, 0.05*(1+math.Cos(math.Pi*float64(i%50)/50)))
	}
	var buf bytes.Buffer
	err := PlotPNG(&buf, []Panel{
		{Title: "training loss", XLab: "step", LogY: true, Lines: []Series{{Name: "fold 0", X: xs, Y: loss}}},
		{Title: "learning rate", XLab: "step", Lines: []Series{{Name: "lr", X: xs, Y: lr, Color: color.RGBA{200, 0, 0, 255}}}},
	}, 640, 240)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != 640 || img.Bounds().Dy() != 480 {
		t.Fatal(img.Bounds())
	}
	// The LR curve is drawn: red pixels exist in the lower panel, none in the upper.
	red := func(y0, y1 int) int {
		n := 0
		for y := y0; y < y1; y++ {
			for x := 0; x < 640; x++ {
				r, g, b, _ := img.At(x, y).RGBA()
				if r>>8 == 200 && g == 0 && b == 0 {
					n++
				}
			}
		}
		return n
	}
	if red(240, 480) < 100 || red(0, 240) != 0 {
		t.Errorf("red pixels: lower %d upper %d", red(240, 480), red(0, 240))
	}
}
