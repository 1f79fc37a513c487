package parkdelay

import (
	"testing"
	"time"
)

func TestFromEnv(t *testing.T) {
	saved, savedOff := Default, LoopsOff
	t.Cleanup(func() { Default, LoopsOff = saved, savedOff })
	for _, tc := range []struct {
		val     string
		want    time.Duration
		wantErr bool
	}{
		{"", saved, false},
		{"1ms", time.Millisecond, false},
		{"250us", 250 * time.Microsecond, false},
		{"0s", 0, true},
		{"-1ms", 0, true},
		{"soon", 0, true},
	} {
		Default, LoopsOff = saved, false
		t.Setenv(EnvVar, tc.val)
		err := FromEnv()
		if tc.wantErr {
			if err == nil {
				t.Errorf("%s=%q: no error, Default %v", EnvVar, tc.val, Default)
			} else if Default != saved || LoopsOff {
				t.Errorf("%s=%q: error %v, yet Default changed to %v (LoopsOff %v)", EnvVar, tc.val, err, Default, LoopsOff)
			}
			continue
		}
		if err != nil || Default != tc.want {
			t.Errorf("%s=%q: Default %v, err %v; want %v, nil", EnvVar, tc.val, Default, err, tc.want)
		}
		if wantOff := tc.val != ""; LoopsOff != wantOff {
			t.Errorf("%s=%q: LoopsOff %v, want %v", EnvVar, tc.val, LoopsOff, wantOff)
		}
	}
}
