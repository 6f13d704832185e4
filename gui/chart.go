package gui

import (
	"fmt"
	"image/color"
	"math"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// Colours of the dashboard's series: green, amber and red read as "fine",
// "waiting" and "failed" in both themes.
var (
	colorSent     = color.NRGBA{R: 0x2e, G: 0x9d, B: 0x4f, A: 0xff}
	colorDeferred = color.NRGBA{R: 0xe0, G: 0x9b, B: 0x1a, A: 0xff}
	colorBounced  = color.NRGBA{R: 0xd3, G: 0x3a, B: 0x2f, A: 0xff}
)

// Series is one kind of value in a BarChart.
type Series struct {
	Name  string
	Color color.Color
}

// BarChart is a small stacked bar chart drawn with canvas primitives: one
// bar per interval, one coloured segment per series, the largest total
// written at the top and the first and last times under the axis.
type BarChart struct {
	widget.BaseWidget
	series []Series
	values [][]float64 // [bar][series]
	from   string
	to     string
}

// NewBarChart returns an empty chart of the given series.
func NewBarChart(series []Series) *BarChart {
	c := &BarChart{series: series}
	c.ExtendBaseWidget(c)
	return c
}

// SetData replaces the bars; values[i][j] is series j in bar i. from and
// to label the two ends of the time axis. Call on the Fyne goroutine.
func (c *BarChart) SetData(values [][]float64, from, to string) {
	c.values, c.from, c.to = values, from, to
	c.Refresh()
}

// Total returns the sum of series j over all bars (for tests and tooltips).
func (c *BarChart) Total(j int) float64 {
	var t float64
	for _, bar := range c.values {
		t += bar[j]
	}
	return t
}

// Legend returns a row naming each series next to its colour.
func (c *BarChart) Legend() fyne.CanvasObject {
	row := container.NewHBox()
	for _, s := range c.series {
		swatch := canvas.NewRectangle(s.Color)
		swatch.SetMinSize(fyne.NewSize(12, 12))
		row.Add(container.NewCenter(swatch))
		row.Add(widget.NewLabel(s.Name))
	}
	return container.NewCenter(row)
}

// CreateRenderer implements fyne.Widget.
func (c *BarChart) CreateRenderer() fyne.WidgetRenderer {
	r := &barChartRenderer{chart: c}
	r.axis = canvas.NewLine(theme.Color(theme.ColorNameForeground))
	r.max = canvas.NewText("", theme.Color(theme.ColorNamePlaceHolder))
	r.from = canvas.NewText("", theme.Color(theme.ColorNamePlaceHolder))
	r.to = canvas.NewText("", theme.Color(theme.ColorNamePlaceHolder))
	r.empty = canvas.NewText("No mail in this period", theme.Color(theme.ColorNamePlaceHolder))
	for _, t := range []*canvas.Text{r.max, r.from, r.to, r.empty} {
		t.TextSize = theme.CaptionTextSize()
	}
	r.Refresh()
	return r
}

type barChartRenderer struct {
	chart         *BarChart
	axis          *canvas.Line
	max, from, to *canvas.Text
	empty         *canvas.Text
	bars          []*canvas.Rectangle // len(values)*len(series)
	size          fyne.Size
	objects       []fyne.CanvasObject
	maxTotal      float64
}

func (r *barChartRenderer) MinSize() fyne.Size { return fyne.NewSize(240, 120) }

func (r *barChartRenderer) Objects() []fyne.CanvasObject { return r.objects }

func (r *barChartRenderer) Destroy() {}

func (r *barChartRenderer) Refresh() {
	c := r.chart
	need := len(c.values) * len(c.series)
	for len(r.bars) < need {
		r.bars = append(r.bars, canvas.NewRectangle(color.Transparent))
	}
	r.bars = r.bars[:need]
	r.maxTotal = 0
	for _, bar := range c.values {
		var t float64
		for _, v := range bar {
			t += v
		}
		r.maxTotal = math.Max(r.maxTotal, t)
	}
	for i := range c.values {
		for j, s := range c.series {
			r.bars[i*len(c.series)+j].FillColor = s.Color
		}
	}
	r.max.Text = fmt.Sprint(r.maxTotal)
	r.from.Text, r.to.Text = c.from, c.to
	r.objects = r.objects[:0]
	r.objects = append(r.objects, r.axis, r.max, r.from, r.to)
	for _, b := range r.bars {
		r.objects = append(r.objects, b)
	}
	if r.maxTotal == 0 {
		r.objects = append(r.objects, r.empty)
	}
	r.Layout(r.size)
	for _, o := range r.objects {
		o.Refresh()
	}
}

func (r *barChartRenderer) Layout(size fyne.Size) {
	r.size = size
	c := r.chart
	textH := r.from.MinSize().Height
	left := r.max.MinSize().Width + 6
	top := textH / 2
	bottom := size.Height - textH - 4
	plotW := size.Width - left
	plotH := bottom - top
	r.axis.Position1 = fyne.NewPos(left, bottom)
	r.axis.Position2 = fyne.NewPos(size.Width, bottom)
	r.max.Move(fyne.NewPos(0, 0))
	r.from.Move(fyne.NewPos(left, bottom+2))
	r.to.Move(fyne.NewPos(size.Width-r.to.MinSize().Width, bottom+2))
	r.empty.Move(fyne.NewPos(left+(plotW-r.empty.MinSize().Width)/2, top+plotH/2-textH/2))
	n := len(c.values)
	if n == 0 || plotH <= 0 {
		return
	}
	slot := plotW / float32(n)
	gap := slot * 0.2
	for i, bar := range c.values {
		y := bottom
		for j, v := range bar {
			h := float32(0)
			if r.maxTotal > 0 {
				h = float32(v/r.maxTotal) * plotH
			}
			rect := r.bars[i*len(c.series)+j]
			y -= h
			rect.Move(fyne.NewPos(left+float32(i)*slot+gap/2, y))
			rect.Resize(fyne.NewSize(slot-gap, h))
		}
	}
}
