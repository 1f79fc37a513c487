package bench_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/bench"
	"github.com/porta-project/porta/portatest"
)

func TestJSONRoundTrip(t *testing.T) {
	t.Parallel()
	// A run with errors, so that every part of the report is filled in.
	srv := portatest.NewServer(t, porta.Upper)
	res := run(t, bench.Config{Addr: srv.Addr, Conns: 2, Messages: 10, Label: "json"})
	ok := run(t, bench.Config{Addr: portatest.NewServer(t, nil).Addr, Conns: 2, Pipeline: 4, Messages: 400, Rate: 4000})
	for _, r := range []*bench.Result{res, ok} {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var back bench.Result
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(r, &back) {
			t.Errorf("JSON round trip changed the result:\n got %+v\nwant %+v", &back, r)
		}
	}
	if len(res.Examples) == 0 || res.Errors["wrong"] != 10 {
		t.Errorf("the erring run has errors %v and %d examples", res.Errors, len(res.Examples))
	}
	if len(ok.Latency.Distribution) < 5 || ok.Latency.Distribution[0].Percentile != 0 ||
		ok.Latency.Distribution[len(ok.Latency.Distribution)-1].Percentile != 100 {
		t.Errorf("distribution %v, want points from 0 to 100%%", ok.Latency.Distribution)
	}
}

// svgElement is an element of an SVG document, with its attributes and
// all the text inside it.
type svgElement struct {
	name  string
	attrs map[string]string
	text  string
}

// parseSVG decodes doc as XML, failing the test if it is not well formed,
// and returns its elements in document order.
func parseSVG(t *testing.T, doc []byte) []svgElement {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(doc))
	var elems []svgElement
	var stack []int
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, doc)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			e := svgElement{name: tok.Name.Local, attrs: map[string]string{}}
			for _, a := range tok.Attr {
				e.attrs[a.Name.Local] = a.Value
			}
			elems = append(elems, e)
			stack = append(stack, len(elems)-1)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			for _, i := range stack { // an element's text includes its children's
				elems[i].text += string(tok)
			}
		}
	}
	if len(elems) == 0 || elems[0].name != "svg" {
		t.Fatalf("the document's root is not <svg>:\n%s", doc)
	}
	return elems
}

// series returns the chart's series: <path> or <polyline> elements of
// class "series".
func series(elems []svgElement) []svgElement {
	var out []svgElement
	for _, e := range elems {
		if (e.name == "path" || e.name == "polyline") && strings.Contains(" "+e.attrs["class"]+" ", " series ") {
			out = append(out, e)
		}
	}
	return out
}

func TestSVGOneSeriesPerRun(t *testing.T) {
	t.Parallel()
	srv := portatest.NewServer(t, nil)
	labels := []string{"porta serve", `tricky <&"'> label`, "third"}
	var results []*bench.Result
	for _, l := range labels {
		results = append(results, run(t, bench.Config{Addr: srv.Addr, Conns: 2, Messages: 200, Label: l}))
	}
	for n := 1; n <= len(results); n++ {
		var b bytes.Buffer
		if err := bench.WriteSVG(&b, results[:n]...); err != nil {
			t.Fatal(err)
		}
		s := series(parseSVG(t, b.Bytes()))
		if len(s) != n {
			t.Fatalf("%d runs drawn as %d series", n, len(s))
		}
		ids := map[string]bool{}
		for i, e := range s {
			if e.attrs["data-label"] != labels[i] || !strings.Contains(e.text, labels[i]) {
				t.Errorf("series %d is labelled %q (title %q), want %q", i, e.attrs["data-label"], e.text, labels[i])
			}
			if id := e.attrs["id"]; id == "" || ids[id] || strings.ContainsAny(id, ` <&"'`) {
				t.Errorf("series %d has id %q: want a unique, plain id", i, id)
			} else {
				ids[id] = true
			}
			if !strings.HasPrefix(e.attrs["d"], "M") || strings.Count(e.attrs["d"], "L") < 3 {
				t.Errorf("series %d path %q has too few points", i, e.attrs["d"])
			}
		}
	}
}

func TestSVGAxes(t *testing.T) {
	t.Parallel()
	r := &bench.Result{Label: "synthetic", Latency: bench.Latency{P50: 20, P99: 1500, Max: 3000, Distribution: []bench.Point{
		{Percentile: 0, Micros: 10}, {Percentile: 50, Micros: 20}, {Percentile: 90, Micros: 40},
		{Percentile: 99, Micros: 1500}, {Percentile: 99.99, Micros: 2500}, {Percentile: 100, Micros: 3000},
	}}}
	var b bytes.Buffer
	if err := bench.WriteSVG(&b, r); err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, e := range parseSVG(t, b.Bytes()) {
		if e.name == "text" {
			texts = append(texts, e.text)
		}
	}
	all := strings.Join(texts, "|")
	for _, want := range []string{"|50%|", "|90%|", "|99%|", "|99.9%|", "|99.99%|", "Latency (ms)", "Percentile"} {
		if !strings.Contains("|"+all+"|", want) {
			t.Errorf("chart texts %q lack %q", all, want)
		}
	}
	if err := bench.WriteSVG(&b); err == nil {
		t.Error("WriteSVG with no results: no error")
	}
}
