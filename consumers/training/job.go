package training

import (
	"fmt"
	"strconv"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/train"
)

// Settings is the training recipe of a run: what every fold job and the merge use, so they agree.
// Zero fields take the defaults of internal/train (DefaultConfig of the architecture).
type Settings struct {
	Arch           string  `json:"arch"`
	Size           int     `json:"size"`
	Folds          int     `json:"folds"`
	Cycles         int     `json:"cycles"`
	EpochsPerCycle int     `json:"epochs_per_cycle"`
	Batch          int     `json:"batch"`
	LR             float64 `json:"lr,omitempty"`
	TTAViews       int     `json:"tta_views"`
	Seed           int64   `json:"seed"`
	Name           string  `json:"name,omitempty"`
}

// DefaultSettings is the CPU tiny preset of `hpa up`: it trains in a minute on two cores.
func DefaultSettings() Settings {
	return Settings{Arch: "seresnext_tiny", Size: 32, Folds: 4, Cycles: 1, EpochsPerCycle: 2, Batch: 8, TTAViews: 2, Seed: 1, Name: "hpa"}
}

// Config returns the trainer's configuration of s for data dir and output dir. The fold split is
// the run's folds.csv (FoldsFile), so every worker and the merge see the same one.
func (s Settings) Config(dataDir, outDir, foldsFile, version, parent string, workers int) (train.Config, error) {
	arch, err := model.Preset(s.Arch)
	if err != nil {
		return train.Config{}, err
	}
	c := train.DefaultConfig(arch)
	c.DataDir, c.OutDir, c.FoldsFile = dataDir, outDir, foldsFile
	set := func(p *int, v int) {
		if v > 0 {
			*p = v
		}
	}
	set(&c.Size, s.Size)
	set(&c.Folds, s.Folds)
	set(&c.Cycles, s.Cycles)
	set(&c.EpochsPerCycle, s.EpochsPerCycle)
	set(&c.BatchSize, s.Batch)
	set(&c.TTAViews, s.TTAViews)
	set(&c.Workers, workers)
	if s.LR > 0 {
		c.LR = s.LR
	}
	c.Seed = s.Seed
	if s.Name != "" {
		c.Name = s.Name
	}
	c.Version, c.ParentVersion = version, parent
	c.DedupHamming = -1 // the split comes from folds.csv
	return c, c.Validate()
}

// Job is one fold job on the work queue (bus.TrainJobsStream, subject <TrainJobsSubject>.<run>).
type Job struct {
	Run      string   `json:"run"`
	Fold     int      `json:"fold"`
	Dataset  string   `json:"dataset"` // key of the snapshot
	Data     string   `json:"data"`    // prefix holding train.csv and folds.csv of the run
	Out      string   `json:"out"`     // prefix of this fold's checkpoints and members
	Version  string   `json:"version"` // candidate version
	Parent   string   `json:"parent,omitempty"`
	Settings Settings `json:"settings"`
}

// MsgID deduplicates the job on the stream.
func (j Job) MsgID() string { return j.Run + "/fold-" + strconv.Itoa(j.Fold) }

// runDataPrefix and foldPrefix lay out a run's objects below the runs prefix.
func runDataPrefix(runsPrefix, run string) string { return runsPrefix + run + "/data/" }
func foldPrefix(runsPrefix, run string, fold int) string {
	return fmt.Sprintf("%s%s/fold-%d/", runsPrefix, run, fold)
}
