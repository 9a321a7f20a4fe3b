package onnx

import (
	"math"
	"time"

	"github.com/hpa-plates/hpa/internal/model"
)

// A plain, slow float64 forward pass of the same network, written from timm's module definitions
// (not from the exported graph), to check what ONNX Runtime computes from the export.

type fmap struct {
	c, h, w int
	v       []float64 // [c][h][w]
}

func newFmap(c, h, w int) fmap { return fmap{c, h, w, make([]float64, c*h*w)} }

func (f fmap) at(c, y, x int) float64 { return f.v[(c*f.h+y)*f.w+x] }

// conv2d: weight [out, in/groups, k, k], optional bias; zero padding; floor output size.
func conv2d(in fmap, wt []float32, bias []float32, out, k, stride, pad, groups int) fmap {
	oh := (in.h+2*pad-k)/stride + 1
	ow := (in.w+2*pad-k)/stride + 1
	o := newFmap(out, oh, ow)
	cinG, coutG := in.c/groups, out/groups
	for oc := 0; oc < out; oc++ {
		g := oc / coutG
		for y := 0; y < oh; y++ {
			for x := 0; x < ow; x++ {
				s := 0.0
				if bias != nil {
					s = float64(bias[oc])
				}
				for ic := 0; ic < cinG; ic++ {
					c := g*cinG + ic
					for ky := 0; ky < k; ky++ {
						iy := y*stride - pad + ky
						if iy < 0 || iy >= in.h {
							continue
						}
						for kx := 0; kx < k; kx++ {
							ix := x*stride - pad + kx
							if ix < 0 || ix >= in.w {
								continue
							}
							s += float64(wt[((oc*cinG+ic)*k+ky)*k+kx]) * in.at(c, iy, ix)
						}
					}
				}
				o.v[(oc*oh+y)*ow+x] = s
			}
		}
	}
	return o
}

func batchNorm(f fmap, w model.Weights, name string) fmap {
	g, b, m, v := w[name+".weight"], w[name+".bias"], w[name+".running_mean"], w[name+".running_var"]
	o := newFmap(f.c, f.h, f.w)
	n := f.h * f.w
	for c := 0; c < f.c; c++ {
		scale := float64(g[c]) / math.Sqrt(float64(v[c])+1e-5)
		for i := 0; i < n; i++ {
			o.v[c*n+i] = (f.v[c*n+i]-float64(m[c]))*scale + float64(b[c])
		}
	}
	return o
}

func relu(f fmap) fmap {
	o := newFmap(f.c, f.h, f.w)
	for i, x := range f.v {
		o.v[i] = math.Max(x, 0)
	}
	return o
}

func maxPool3s2(f fmap) fmap {
	oh, ow := (f.h+2-3)/2+1, (f.w+2-3)/2+1
	o := newFmap(f.c, oh, ow)
	for c := 0; c < f.c; c++ {
		for y := 0; y < oh; y++ {
			for x := 0; x < ow; x++ {
				m := math.Inf(-1)
				for ky := 0; ky < 3; ky++ {
					for kx := 0; kx < 3; kx++ {
						iy, ix := 2*y-1+ky, 2*x-1+kx
						if iy >= 0 && iy < f.h && ix >= 0 && ix < f.w {
							m = math.Max(m, f.at(c, iy, ix))
						}
					}
				}
				o.v[(c*oh+y)*ow+x] = m
			}
		}
	}
	return o
}

func channelMeans(f fmap) []float64 {
	n := f.h * f.w
	m := make([]float64, f.c)
	for c := range m {
		for i := 0; i < n; i++ {
			m[c] += f.v[c*n+i]
		}
		m[c] /= float64(n)
	}
	return m
}

// linear: y = W x + b with W [out, in].
func linear(x []float64, wt, b []float32, out int) []float64 {
	y := make([]float64, out)
	for o := range y {
		s := float64(b[o])
		for i, xi := range x {
			s += float64(wt[o*len(x)+i]) * xi
		}
		y[o] = s
	}
	return y
}

func add(a, b fmap) fmap {
	o := newFmap(a.c, a.h, a.w)
	for i := range o.v {
		o.v[i] = a.v[i] + b.v[i]
	}
	return o
}

// refForward computes the logits of one sample [InChans, s, s].
func refForward(spec model.Spec, w model.Weights, img []float32, s int) []float64 {
	x := newFmap(spec.InChans, s, s)
	for i, v := range img {
		x.v[i] = float64(v)
	}
	x = relu(batchNorm(conv2d(x, w["conv1.weight"], nil, spec.StemWidth, 7, 2, 3, 1), w, "bn1"))
	if spec.Stem == model.StemConv {
		x = relu(batchNorm(conv2d(x, w["maxpool.0.weight"], nil, spec.StemWidth, 3, 2, 1, 1), w, "maxpool.1"))
	} else {
		x = maxPool3s2(x)
	}
	for _, b := range spec.Blocks() {
		p := b.Prefix
		y := relu(batchNorm(conv2d(x, w[p+".conv1.weight"], nil, b.Width, 1, 1, 0, 1), w, p+".bn1"))
		y = relu(batchNorm(conv2d(y, w[p+".conv2.weight"], nil, b.Width, 3, b.Stride, 1, b.Groups), w, p+".bn2"))
		y = batchNorm(conv2d(y, w[p+".conv3.weight"], nil, b.Out, 1, 1, 0, 1), w, p+".bn3")
		// SE: fc1/fc2 are 1x1 convs on the pooled vector, i.e. linear layers.
		s1 := linear(channelMeans(y), w[p+".se.fc1.weight"], w[p+".se.fc1.bias"], b.SEChannels)
		for i := range s1 {
			s1[i] = math.Max(s1[i], 0)
		}
		gate := linear(s1, w[p+".se.fc2.weight"], w[p+".se.fc2.bias"], b.Out)
		n := y.h * y.w
		for c := 0; c < y.c; c++ {
			g := 1 / (1 + math.Exp(-gate[c]))
			for i := 0; i < n; i++ {
				y.v[c*n+i] *= g
			}
		}
		sc := x
		if b.Downsample {
			sc = batchNorm(conv2d(x, w[p+".downsample.0.weight"], nil, b.Out, 1, b.Stride, 0, 1), w, p+".downsample.1")
		}
		x = relu(add(y, sc))
	}
	return linear(channelMeans(x), w["fc.weight"], w["fc.bias"], spec.NumClasses)
}

func nowNS() int64 { return time.Now().UnixNano() }
