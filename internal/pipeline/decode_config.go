package pipeline

import (
	"fmt"

	"github.com/spf13/viper"
)

// Config keys of the decoder (documented in config.yaml; env HPA_DECODE_MAX_PIXELS,
// HPA_DECODE_YELLOW_FROM).
const (
	KeyDecodeMaxPixels  = "decode.max_pixels"
	KeyDecodeYellowFrom = "decode.yellow_from"
)

// DecodeOptionsFromConfig reads the decode.* keys (unset keys give the DecodeOptions defaults)
// and validates them.
func DecodeOptionsFromConfig(v *viper.Viper) (DecodeOptions, error) {
	o := DecodeOptions{YellowFrom: v.GetString(KeyDecodeYellowFrom)}
	if v.IsSet(KeyDecodeMaxPixels) {
		n, err := toInt64(v.Get(KeyDecodeMaxPixels))
		if err != nil {
			return DecodeOptions{}, fmt.Errorf("config %s: %w", KeyDecodeMaxPixels, err)
		}
		o.MaxPixels = n
	}
	if err := o.Validate(); err != nil {
		return DecodeOptions{}, fmt.Errorf("config: %w", err)
	}
	return o, nil
}

func toInt64(x any) (int64, error) {
	switch n := x.(type) {
	case int:
		return int64(n), nil
	case int64:
		return n, nil
	case float64:
		if n != float64(int64(n)) {
			return 0, fmt.Errorf("%v is not a whole number", n)
		}
		return int64(n), nil
	case string:
		var v int64
		if _, err := fmt.Sscan(n, &v); err != nil {
			return 0, fmt.Errorf("%q is not a whole number", n)
		}
		return v, nil
	}
	return 0, fmt.Errorf("%v (%T) is not a whole number", x, x)
}
