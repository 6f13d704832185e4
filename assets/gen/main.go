//go:build ignore

// Command gen draws Postroom's icons: the application icon (an envelope with
// an outgoing arrow on a blue tile, 512×512) and the two tray variants shown
// while sending is paused (grey, pause bars) or failing (red dot), 64×64.
//
// The icons are drawn from geometry rather than kept as hand-edited images so
// that a colour or proportion change is a one-line edit and every variant
// stays consistent. Run it from the repository root after a change:
//
//	go run assets/gen/main.go
package main

import (
	"image"
	"image/color"
	"image/png"
	"log"
	"math"
	"os"
	"path/filepath"
)

// shape reports whether the point (x, y), in unit coordinates where the
// image spans [0,1]×[0,1], lies inside the shape.
type shape func(x, y float64) bool

// layer is one flat-coloured shape; layers are painted in order.
type layer struct {
	fill   color.NRGBA
	inside shape
}

// palette holds the colours that differ between the variants.
type palette struct {
	tile, tileDark, badge color.NRGBA
}

var (
	white     = color.NRGBA{0xff, 0xff, 0xff, 0xff}
	alertRed  = color.NRGBA{0xdc, 0x26, 0x26, 0xff}
	activePal = palette{
		tile:     color.NRGBA{0x1d, 0x6f, 0xd8, 0xff},
		tileDark: color.NRGBA{0x14, 0x4f, 0x9c, 0xff},
		badge:    color.NRGBA{0xf5, 0x9e, 0x0b, 0xff},
	}
	pausedPal = palette{
		tile:     color.NRGBA{0x8a, 0x8f, 0x98, 0xff},
		tileDark: color.NRGBA{0x5f, 0x64, 0x6c, 0xff},
		badge:    color.NRGBA{0x5f, 0x64, 0x6c, 0xff},
	}
)

func main() {
	out := "assets"
	if len(os.Args) > 1 {
		out = os.Args[1]
	}
	files := []struct {
		name   string
		size   int
		layers []layer
	}{
		{"icon.png", 512, icon(activePal, arrow)},
		{"icon-paused.png", 64, icon(pausedPal, pauseBars)},
		{"icon-alert.png", 64, append(icon(activePal, arrow), alertDot()...)},
	}
	for _, f := range files {
		if err := write(filepath.Join(out, f.name), render(f.size, f.layers)); err != nil {
			log.Fatal(err)
		}
	}
}

// icon is the tile, the envelope and a round badge holding mark.
func icon(p palette, mark shape) []layer {
	return []layer{
		{p.tile, roundRect(0.04, 0.04, 0.96, 0.96, 0.18)},
		{white, roundRect(0.14, 0.24, 0.80, 0.70, 0.05)},
		{p.tileDark, union(
			segment(0.17, 0.28, 0.47, 0.50, 0.035),
			segment(0.47, 0.50, 0.77, 0.28, 0.035),
		)},
		{white, circle(0.72, 0.70, 0.225)},
		{p.badge, circle(0.72, 0.70, 0.185)},
		{white, mark},
	}
}

// arrow points right, out of the badge: mail leaving the relay.
func arrow(x, y float64) bool {
	shaft := x >= 0.61 && x <= 0.75 && math.Abs(y-0.70) <= 0.032
	head := triangle(0.72, 0.60, 0.83, 0.70, 0.72, 0.80)(x, y)
	return shaft || head
}

// pauseBars is the usual media "pause" sign.
func pauseBars(x, y float64) bool {
	inY := math.Abs(y-0.70) <= 0.085
	return inY && ((x >= 0.655 && x <= 0.695) || (x >= 0.745 && x <= 0.785))
}

// alertDot is a red dot with a white ring in the top-right corner, large
// enough to read at 16–24 px tray sizes.
func alertDot() []layer {
	return []layer{
		{white, circle(0.80, 0.20, 0.20)},
		{alertRed, circle(0.80, 0.20, 0.16)},
	}
}

func circle(cx, cy, r float64) shape {
	return func(x, y float64) bool { return math.Hypot(x-cx, y-cy) <= r }
}

func roundRect(x0, y0, x1, y1, r float64) shape {
	return func(x, y float64) bool {
		if x < x0 || x > x1 || y < y0 || y > y1 {
			return false
		}
		// Distance from the inner rectangle shrunk by r decides the corners.
		dx := math.Max(math.Max(x0+r-x, x-(x1-r)), 0)
		dy := math.Max(math.Max(y0+r-y, y-(y1-r)), 0)
		return dx*dx+dy*dy <= r*r
	}
}

// segment is a line from (ax, ay) to (bx, by) with round caps, w wide.
func segment(ax, ay, bx, by, w float64) shape {
	return func(x, y float64) bool {
		vx, vy := bx-ax, by-ay
		t := ((x-ax)*vx + (y-ay)*vy) / (vx*vx + vy*vy)
		t = math.Max(0, math.Min(1, t))
		return math.Hypot(x-(ax+t*vx), y-(ay+t*vy)) <= w/2
	}
}

func triangle(ax, ay, bx, by, cx, cy float64) shape {
	side := func(px, py, qx, qy, x, y float64) float64 {
		return (qx-px)*(y-py) - (qy-py)*(x-px)
	}
	return func(x, y float64) bool {
		d1 := side(ax, ay, bx, by, x, y)
		d2 := side(bx, by, cx, cy, x, y)
		d3 := side(cx, cy, ax, ay, x, y)
		neg := d1 < 0 || d2 < 0 || d3 < 0
		pos := d1 > 0 || d2 > 0 || d3 > 0
		return !(neg && pos)
	}
}

func union(shapes ...shape) shape {
	return func(x, y float64) bool {
		for _, s := range shapes {
			if s(x, y) {
				return true
			}
		}
		return false
	}
}

// render paints the layers with 4×4 supersampling so edges are smooth at
// tray sizes, compositing each layer over the ones below it.
func render(size int, layers []layer) *image.NRGBA {
	const samples = 4
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	for py := 0; py < size; py++ {
		for px := 0; px < size; px++ {
			var r, g, b, a float64 // premultiplied, 0..1
			for _, l := range layers {
				hits := 0
				for sy := 0; sy < samples; sy++ {
					for sx := 0; sx < samples; sx++ {
						x := (float64(px) + (float64(sx)+0.5)/samples) / float64(size)
						y := (float64(py) + (float64(sy)+0.5)/samples) / float64(size)
						if l.inside(x, y) {
							hits++
						}
					}
				}
				cov := float64(hits) / (samples * samples)
				r = float64(l.fill.R)/255*cov + r*(1-cov)
				g = float64(l.fill.G)/255*cov + g*(1-cov)
				b = float64(l.fill.B)/255*cov + b*(1-cov)
				a = cov + a*(1-cov)
			}
			if a == 0 {
				continue
			}
			img.SetNRGBA(px, py, color.NRGBA{
				R: uint8(math.Round(r / a * 255)),
				G: uint8(math.Round(g / a * 255)),
				B: uint8(math.Round(b / a * 255)),
				A: uint8(math.Round(a * 255)),
			})
		}
	}
	return img
}

func write(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
