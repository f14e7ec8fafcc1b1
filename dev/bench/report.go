package main

import "time"

// Row is one measure, for the project and its baseline.
type Row struct {
	Measure  string  `json:"measure"`
	Project  float64 `json:"project"`
	Baseline float64 `json:"baseline"`
	Unit     string  `json:"unit"`
	// Target bounds Project/Baseline, or Project alone when Absolute; 0: none.
	Target   float64 `json:"target,omitempty"`
	AtLeast  bool    `json:"at_least,omitempty"`
	Absolute bool    `json:"absolute,omitempty"`
}

// Ratio is project/baseline.
func (r Row) Ratio() float64 { return r.Project / r.Baseline }

// Met says whether the row meets its target (true without one).
func (r Row) Met() bool {
	v := r.Ratio()
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
	Rows       []Row  `json:"rows"`
}
