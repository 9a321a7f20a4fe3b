package torch

import (
	"math"

	"github.com/hpa-plates/hpa/internal/model"
)

// A plain, slow float64 forward pass of the SE-ResNeXt described by model.Spec, written from timm's
// definition, as the independent expectation for the shim's eval-mode forward.

type act struct {
	n, c, h, w int
	d          []float64
}

func (a *act) at(n, c, y, x int) float64 { return a.d[((n*a.c+c)*a.h+y)*a.w+x] }

func newAct(n, c, h, w int) *act { return &act{n, c, h, w, make([]float64, n*c*h*w)} }

func refConv(x *act, wt []float32, bias []float32, out, k, stride, groups int) *act {
	pad := k / 2
	oh := (x.h+2*pad-k)/stride + 1
	ow := (x.w+2*pad-k)/stride + 1
	y := newAct(x.n, out, oh, ow)
	inPer, outPer := x.c/groups, out/groups
	for n := 0; n < x.n; n++ {
		for o := 0; o < out; o++ {
			g := o / outPer
			for oy := 0; oy < oh; oy++ {
				for ox := 0; ox < ow; ox++ {
					s := 0.0
					if bias != nil {
						s = float64(bias[o])
					}
					for ci := 0; ci < inPer; ci++ {
						c := g*inPer + ci
						for ky := 0; ky < k; ky++ {
							iy := oy*stride - pad + ky
							if iy < 0 || iy >= x.h {
								continue
							}
							for kx := 0; kx < k; kx++ {
								ix := ox*stride - pad + kx
								if ix < 0 || ix >= x.w {
									continue
								}
								s += float64(wt[((o*inPer+ci)*k+ky)*k+kx]) * x.at(n, c, iy, ix)
							}
						}
					}
					y.d[((n*out+o)*oh+oy)*ow+ox] = s
				}
			}
		}
	}
	return y
}

func refBN(x *act, w model.Weights, name string) *act {
	g, b, m, v := w[name+".weight"], w[name+".bias"], w[name+".running_mean"], w[name+".running_var"]
	y := newAct(x.n, x.c, x.h, x.w)
	hw := x.h * x.w
	for i := range x.d {
		c := (i / hw) % x.c
		y.d[i] = (x.d[i]-float64(m[c]))/math.Sqrt(float64(v[c])+1e-5)*float64(g[c]) + float64(b[c])
	}
	return y
}

func refReLU(x *act) *act {
	for i, v := range x.d {
		if v < 0 {
			x.d[i] = 0
		}
	}
	return x
}

func refMaxPool(x *act) *act {
	oh, ow := (x.h+2-3)/2+1, (x.w+2-3)/2+1
	y := newAct(x.n, x.c, oh, ow)
	for n := 0; n < x.n; n++ {
		for c := 0; c < x.c; c++ {
			for oy := 0; oy < oh; oy++ {
				for ox := 0; ox < ow; ox++ {
					m := math.Inf(-1)
					for ky := 0; ky < 3; ky++ {
						for kx := 0; kx < 3; kx++ {
							iy, ix := oy*2-1+ky, ox*2-1+kx
							if iy >= 0 && iy < x.h && ix >= 0 && ix < x.w {
								m = math.Max(m, x.at(n, c, iy, ix))
							}
						}
					}
					y.d[((n*x.c+c)*oh+oy)*ow+ox] = m
				}
			}
		}
	}
	return y
}

func refGAP(x *act) *act {
	y := newAct(x.n, x.c, 1, 1)
	hw := x.h * x.w
	for i := range y.d {
		s := 0.0
		for j := 0; j < hw; j++ {
			s += x.d[i*hw+j]
		}
		y.d[i] = s / float64(hw)
	}
	return y
}

func refSE(x *act, w model.Weights, p string, rd int) *act {
	s := refGAP(x)
	s = refReLU(refConv(s, w[p+".fc1.weight"], w[p+".fc1.bias"], rd, 1, 1, 1))
	s = refConv(s, w[p+".fc2.weight"], w[p+".fc2.bias"], x.c, 1, 1, 1)
	y := newAct(x.n, x.c, x.h, x.w)
	hw := x.h * x.w
	for i := range x.d {
		y.d[i] = x.d[i] / (1 + math.Exp(-s.d[i/hw]))
	}
	return y
}

// refForward returns n x NumClasses logits of the eval-mode network and the output of the stem
// convolution conv1 (what bn1 normalizes), for BN statistics checks.
func refForward(s model.Spec, w model.Weights, x []float32, n, h, wd int) (logits []float64, stem *act) {
	a := &act{n, s.InChans, h, wd, make([]float64, len(x))}
	for i, v := range x {
		a.d[i] = float64(v)
	}
	conv1 := refConv(a, w["conv1.weight"], nil, s.StemWidth, 7, 2, 1)
	a = refReLU(refBN(conv1, w, "bn1"))
	if s.Stem == model.StemConv {
		a = refReLU(refBN(refConv(a, w["maxpool.0.weight"], nil, s.StemWidth, 3, 2, 1), w, "maxpool.1"))
	} else {
		a = refMaxPool(a)
	}
	for _, b := range s.Blocks() {
		p := b.Prefix
		y := refReLU(refBN(refConv(a, w[p+".conv1.weight"], nil, b.Width, 1, 1, 1), w, p+".bn1"))
		y = refReLU(refBN(refConv(y, w[p+".conv2.weight"], nil, b.Width, 3, b.Stride, b.Groups), w, p+".bn2"))
		y = refBN(refConv(y, w[p+".conv3.weight"], nil, b.Out, 1, 1, 1), w, p+".bn3")
		y = refSE(y, w, p+".se", b.SEChannels)
		sc := a
		if b.Downsample {
			sc = refBN(refConv(a, w[p+".downsample.0.weight"], nil, b.Out, 1, b.Stride, 1), w, p+".downsample.1")
		}
		for i := range y.d {
			y.d[i] += sc.d[i]
		}
		a = refReLU(y)
	}
	g := refGAP(a)
	fw, fb := w["fc.weight"], w["fc.bias"]
	logits = make([]float64, n*s.NumClasses)
	for i := 0; i < n; i++ {
		for k := 0; k < s.NumClasses; k++ {
			v := float64(fb[k])
			for c := 0; c < g.c; c++ {
				v += float64(fw[k*g.c+c]) * g.d[i*g.c+c]
			}
			logits[i*s.NumClasses+k] = v
		}
	}
	return logits, conv1
}
