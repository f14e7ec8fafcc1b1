package main

import "time"

// Row is one measure, for one build of the project and its baseline.
type Row struct {
	Measure string `json:"measure"`
	// Paths says which of the project's paths ran: its fast paths, or
	// go-micro's own server and client.
	Paths    string  `json:"paths"`
	Project  float64 `json:"project"`
	Baseline float64 `json:"baseline"`
	Unit     string  `json:"unit"`
	// Ratio is project/baseline: the median of the rounds' ratios, and
	// Low and High their range, over Pairs rounds.
	Ratio float64 `json:"ratio"`
	Low   float64 `json:"low"`
	High  float64 `json:"high"`
	Pairs int     `json:"pairs"`
	// Target bounds Project/Baseline, or Project alone when Absolute; 0: none.
	Target   float64 `json:"target,omitempty"`
	AtLeast  bool    `json:"at_least,omitempty"`
	Absolute bool    `json:"absolute,omitempty"`
}

// Met says whether the row meets its target (true without one).
func (r Row) Met() bool {
	v := r.Ratio
	if r.Absolute {
		v = r.Project
	}
	switch {
	case r.Target == 0:
		return true
	case r.AtLeast:
		return v >= r.Target
	default:
		return v <= r.Target
	}
}

// Report is a bench run's result.
type Report struct {
	When    time.Time `json:"when"`
	Machine string    `json:"machine"`
	// ProjectRef is the commit the project was built from; empty: the
	// working tree.
	ProjectRef string `json:"project_ref,omitempty"`
	// Rounds is how many times each side was measured, alternated.
	Rounds int   `json:"rounds"`
	Rows   []Row `json:"rows"`
}
