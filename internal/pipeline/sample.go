package pipeline

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// SampleFiles names the four channel files of one sample, indexed by Channel. Paths are as
// ScanDir built them: the scanned directory joined with the file name (absolute when the
// directory was).
type SampleFiles struct {
	ID    string
	Files [4]string
}

// Incomplete is a sample id found by ScanDir without all four channels.
type Incomplete struct {
	ID      string
	Missing []Channel // in channel order
	Present []string  // paths of the channel files that exist, in channel order
}

// imageExts are the file extensions ParseName accepts (compared case-insensitively).
var imageExts = map[string]bool{"png": true, "tif": true, "tiff": true, "jpg": true, "jpeg": true}

// ParseName splits a channel file name "{Id}_{red|green|blue|yellow}.{png|tif|tiff|jpg|jpeg}" into
// its id, channel and extension (lower-cased). The channel suffix is case-sensitive (the HPA
// names are lower case), the extension is not. Ids may contain underscores; the last one
// separates the channel. ok is false for any other name, including an empty id.
func ParseName(base string) (id string, ch Channel, ext string, ok bool) {
	dot := strings.LastIndexByte(base, '.')
	if dot < 0 {
		return "", 0, "", false
	}
	ext = strings.ToLower(base[dot+1:])
	if !imageExts[ext] {
		return "", 0, "", false
	}
	stem := base[:dot]
	us := strings.LastIndexByte(stem, '_')
	if us <= 0 {
		return "", 0, "", false
	}
	for c, n := range ChannelNames {
		if stem[us+1:] == n {
			return stem[:us], Channel(c), ext, true
		}
	}
	return "", 0, "", false
}

// ScanDir lists the samples in dir (not recursive). Files whose names ParseName rejects, and
// directories, are ignored. Samples with all four channels are returned in complete, the others in
// incomplete, both sorted by ID. Two files for the same id and channel (e.g. x_red.png and
// x_red.tif) make ScanDir fail with an *InputError of kind "duplicate"; an unreadable directory
// gives one of kind "io".
func ScanDir(dir string) (complete []SampleFiles, incomplete []Incomplete, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, &InputError{File: dir, Kind: KindIO, Reason: "cannot list directory: " + err.Error(), Err: err}
	}
	byID := map[string]*SampleFiles{}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		if !e.Type().IsRegular() {
			// Follow symlinks to regular files; ignore anything else.
			fi, err := os.Stat(filepath.Join(dir, e.Name()))
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
		}
		id, ch, _, ok := ParseName(e.Name())
		if !ok {
			continue
		}
		s := byID[id]
		if s == nil {
			s = &SampleFiles{ID: id}
			byID[id] = s
		}
		p := filepath.Join(dir, e.Name())
		if s.Files[ch] != "" {
			return nil, nil, inputErr(p, KindDuplicate, "sample %s has two %s files: %s and %s", id, ch, filepath.Base(s.Files[ch]), e.Name())
		}
		s.Files[ch] = p
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		s := byID[id]
		var inc Incomplete
		for c, f := range s.Files {
			if f == "" {
				inc.Missing = append(inc.Missing, Channel(c))
			} else {
				inc.Present = append(inc.Present, f)
			}
		}
		if inc.Missing == nil {
			complete = append(complete, *s)
		} else {
			inc.ID = id
			incomplete = append(incomplete, inc)
		}
	}
	return complete, incomplete, nil
}

// LoadSample reads and decodes the four channel files of sample id (files indexed by Channel)
// and checks that they have the same size. An empty path gives an *InputError of kind
// "missing_channel" (File is the id), a file that does not exist too (File is the path); a read
// failure gives "io", channels of different sizes "size_mismatch" naming the odd file, and decode
// failures the kinds of DecodeChannel.
func LoadSample(id string, files [4]string, opt DecodeOptions) (Image4, error) {
	if err := opt.Validate(); err != nil {
		return Image4{}, err
	}
	for c, f := range files {
		if f == "" {
			return Image4{}, inputErr(id, KindMissingChannel, "sample %s has no %s channel file", id, Channel(c))
		}
	}
	img := Image4{ID: id}
	for c, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return Image4{}, &InputError{File: f, Kind: KindMissingChannel, Reason: "sample " + id + ": " + Channel(c).String() + " channel file does not exist", Err: err}
			}
			return Image4{}, &InputError{File: f, Kind: KindIO, Reason: "cannot read: " + err.Error(), Err: err}
		}
		p, err := DecodeChannel(data, f, Channel(c), opt)
		if err != nil {
			return Image4{}, err
		}
		if c == 0 {
			img.W, img.H = p.W, p.H
		} else if p.W != img.W || p.H != img.H {
			return Image4{}, inputErr(f, KindSizeMismatch, "sample %s: %s channel is %dx%d but %s is %dx%d",
				id, Channel(c), p.W, p.H, Red, img.W, img.H)
		}
		img.Planes[c] = p
	}
	return img, nil
}
