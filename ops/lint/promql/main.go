// Command promql-check parses PromQL expressions with Prometheus's own parser and reports what
// each one selects, so ops/lint can check dashboards and autoscaling queries against the metrics
// the worker really exports.
//
// Input (stdin): a JSON array of {"where": "...", "expr": "..."}.
// Output (stdout): a JSON array, one entry per input, in order:
//
//	{"where": "...", "error": "..." | "",
//	 "selectors": [{"name": "metric", "labels": ["label", ...]}],
//	 "grouping": ["label", ...]}
//
// "labels" are the label names a selector matches on; "grouping" are the label names used in
// by/without clauses and on/ignoring/group_left/group_right modifiers. Exit status 0 unless the
// input cannot be read; parse errors are reported per expression.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type query struct {
	Where string `json:"where"`
	Expr  string `json:"expr"`
}

type selector struct {
	Name   string   `json:"name"`
	Labels []string `json:"labels"`
}

type result struct {
	Where     string     `json:"where"`
	Error     string     `json:"error"`
	Selectors []selector `json:"selectors"`
	Grouping  []string   `json:"grouping"`
}

func analyse(p parser.Parser, q query) result {
	out := result{Where: q.Where, Selectors: []selector{}, Grouping: []string{}}
	expr, err := p.ParseExpr(q.Expr)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	grouping := map[string]bool{}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			sel := selector{Labels: []string{}}
			for _, m := range n.LabelMatchers {
				if m.Name == labels.MetricName {
					if m.Type == labels.MatchEqual {
						sel.Name = m.Value
					}
					continue
				}
				sel.Labels = append(sel.Labels, m.Name)
			}
			out.Selectors = append(out.Selectors, sel)
		case *parser.AggregateExpr:
			for _, l := range n.Grouping {
				grouping[l] = true
			}
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				for _, l := range n.VectorMatching.MatchingLabels {
					grouping[l] = true
				}
				for _, l := range n.VectorMatching.Include {
					grouping[l] = true
				}
			}
		}
		return nil
	})
	for l := range grouping {
		out.Grouping = append(out.Grouping, l)
	}
	sort.Strings(out.Grouping)
	return out
}

func main() {
	var queries []query
	if err := json.NewDecoder(os.Stdin).Decode(&queries); err != nil {
		fmt.Fprintf(os.Stderr, "promql-check: cannot read queries: %v\n", err)
		os.Exit(2)
	}
	p := parser.NewParser(parser.Options{})
	results := make([]result, 0, len(queries))
	for _, q := range queries {
		results = append(results, analyse(p, q))
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(results); err != nil {
		fmt.Fprintf(os.Stderr, "promql-check: %v\n", err)
		os.Exit(2)
	}
}
