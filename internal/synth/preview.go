package synth

import (
	"fmt"
	"image"
	"image/color"

	"github.com/hpa-plates/hpa/internal/pipeline"
)

// Composite makes the usual false-colour view of a 4-channel sample: red = red + yellow/2,
// green = green + yellow/2, blue = blue (saturating). The four images must have the same bounds.
func Composite(ch [4]*image.Gray) (*image.RGBA, error) {
	for c, g := range ch {
		if g == nil {
			return nil, fmt.Errorf("synth: composite: %s channel missing", pipeline.Channel(c))
		}
		if g.Rect != ch[0].Rect {
			return nil, fmt.Errorf("synth: composite: %s channel is %v, red is %v", pipeline.Channel(c), g.Rect, ch[0].Rect)
		}
	}
	b := ch[0].Rect
	out := image.NewRGBA(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r := int(ch[pipeline.Red].GrayAt(x, y).Y)
			g := int(ch[pipeline.Green].GrayAt(x, y).Y)
			bl := int(ch[pipeline.Blue].GrayAt(x, y).Y)
			yl := int(ch[pipeline.Yellow].GrayAt(x, y).Y) / 2
			out.SetRGBA(x, y, color.RGBA{uint8(min(r+yl, 255)), uint8(min(g+yl, 255)), uint8(bl), 255})
		}
	}
	return out, nil
}
