package gui

import (
	"path/filepath"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/storage"
)

// pickerStart is the folder a file picker opens in for a field holding
// path: the folder of the file named there, so that replacing a renewed
// certificate is one click away. nil (the picker's own default) when the
// field is empty, relative, or names a folder that cannot be listed.
func pickerStart(path string) fyne.ListableURI {
	path = strings.TrimSpace(path)
	if path == "" || !filepath.IsAbs(path) {
		return nil
	}
	dir, err := storage.ListerForURI(storage.NewFileURI(filepath.Dir(path)))
	if err != nil {
		return nil
	}
	return dir
}
