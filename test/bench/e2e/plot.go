package main

import (
	"fmt"
	"image/color"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// cdfPoints turns samples (ms) into at most 1000 points of their empirical
// CDF.
func cdfPoints(samples []float64) plotter.XYs {
	s := slices.Clone(samples)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return nil
	}
	step := max(1, n/1000)
	var pts plotter.XYs
	for i := 0; i < n; i += step {
		pts = append(pts, plotter.XY{X: max(s[i], 1e-3), Y: float64(i+1) / float64(n)})
	}
	if last := pts[len(pts)-1]; last.Y != 1 {
		pts = append(pts, plotter.XY{X: max(s[n-1], 1e-3), Y: 1})
	}
	return pts
}

// plotCDF writes the latency CDF of both modes at one N as a PNG.
func plotCDF(path string, N int, raw, convene []float64) error {
	return plotCDFSeries(path, fmt.Sprintf("Publish → apply latency, N = %d (loopback TCP, one process)", N),
		[]cdfSeries{{name: "raw GossipSub", samples: raw}, {name: "Convene room", samples: convene}})
}

// cdfSeries is one line of a CDF plot.
type cdfSeries struct {
	name    string
	samples []float64
}

// plotStyles are the lines' colours and dashes, in order.
var plotStyles = []struct {
	color  color.Color
	dashes []vg.Length
}{
	{color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, []vg.Length{vg.Points(5), vg.Points(3)}},
	{color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, nil},
	{color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, []vg.Length{vg.Points(2), vg.Points(2)}},
}

// plotCDFSeries writes the latency CDFs of up to three series as a PNG.
func plotCDFSeries(path, title string, series []cdfSeries) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "latency (ms, log scale)"
	p.Y.Label.Text = "fraction of deliveries ≤ x"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = 0, 1
	p.Add(plotter.NewGrid())
	for k, s := range series {
		pts := cdfPoints(s.samples)
		if len(pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		st := plotStyles[k%len(plotStyles)]
		l.Color = st.color
		l.Width = vg.Points(1.8)
		l.Dashes = st.dashes
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s (%d samples)", s.name, len(s.samples)), l)
	}
	p.Legend.Top = false
	p.Legend.Left = false
	p.Legend.YPosition = draw.PosBottom
	p.Legend.XOffs = -vg.Points(10)
	p.Legend.YOffs = vg.Points(10)
	return p.Save(7*vg.Inch, 4.2*vg.Inch, path)
}
