package assets

import (
	"bytes"
	"image"
	"image/png"
	"testing"
)

// TestIcons checks that every embedded icon is a PNG of the size the
// platforms expect: a 512×512 application icon (FyneApp.toml points at it
// for packaging) and 64×64 tray variants, square, with transparent corners so
// the rounded tile does not show as a box on a coloured panel.
func TestIcons(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		data []byte
		size int
	}{
		{"Icon", Icon, 512},
		{"IconPaused", IconPaused, 64},
		{"IconAlert", IconAlert, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			img, err := png.Decode(bytes.NewReader(tc.data))
			if err != nil {
				t.Fatalf("not a PNG: %v", err)
			}
			if got := img.Bounds(); got != image.Rect(0, 0, tc.size, tc.size) {
				t.Errorf("size %v, want %dx%d", got.Size(), tc.size, tc.size)
			}
			if _, _, _, a := img.At(0, 0).RGBA(); a != 0 {
				t.Errorf("top-left corner is not transparent (alpha %d)", a)
			}
			if _, _, _, a := img.At(tc.size/2, tc.size/2).RGBA(); a != 0xffff {
				t.Errorf("centre is not opaque (alpha %d)", a)
			}
		})
	}
	if bytes.Equal(IconPaused, IconAlert) {
		t.Error("tray variants are not distinct images")
	}
}
