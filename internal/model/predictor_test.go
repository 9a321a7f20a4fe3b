package model

import (
	"math"
	"testing"
)

func TestSigmoid(t *testing.T) {
	for _, c := range []struct{ x, want float64 }{{0, 0.5}, {math.Log(3), 0.75}, {-math.Log(3), 0.25}, {800, 1}, {-800, 0}} {
		if got := Sigmoid(c.x); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("Sigmoid(%v) = %v, want %v", c.x, got, c.want)
		}
	}
}
