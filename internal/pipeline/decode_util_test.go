package pipeline

import (
	"image/color"
	"time"
)

func colorGray16(v uint16) color.Gray16 { return color.Gray16{Y: v} }

func nowNanos() int64 { return time.Now().UnixNano() }
