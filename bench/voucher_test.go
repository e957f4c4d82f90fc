package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
)

func TestParseVoucherCSV(t *testing.T) {
	five := charging.Euros(5)
	good := "serial,code,value,batch,expiry\n420000001,1966503271178511,5.00,42,2027-02-01\n420000002,0000000000000007,5.00,42,2027-02-01\n"
	cards, err := parseVoucherCSV([]byte(good), 42, five, nil)
	require.NoError(t, err)
	require.Len(t, cards, 2)
	require.Equal(t, "1966503271178511", string(cards[0].code[:]))
	require.Equal(t, "0000000000000007", string(cards[1].code[:]), "leading zeros are part of the code")

	// Appends to what earlier batches gave; CRLF and a missing final
	// newline are read too.
	more, err := parseVoucherCSV([]byte("serial,code,value,batch,expiry\r\n430000001,1111222233334444,5.00,43,2027-02-01"), 43, five, cards)
	require.NoError(t, err)
	require.Len(t, more, 3)
	require.Equal(t, "1111222233334444", string(more[2].code[:]))

	empty, err := parseVoucherCSV([]byte("serial,code,value,batch,expiry\n"), 42, five, nil)
	require.NoError(t, err)
	require.Empty(t, empty)

	for name, body := range map[string]string{
		"no header":      "420000001,1966503271178511,5.00,42,2027-02-01\n",
		"short code":     "serial,code,value,batch,expiry\n420000001,196650327117851,5.00,42,2027-02-01\n",
		"letter in code": "serial,code,value,batch,expiry\n420000001,19665032711785x1,5.00,42,2027-02-01\n",
		"other value":    "serial,code,value,batch,expiry\n420000001,1966503271178511,10.00,42,2027-02-01\n",
		"other batch":    "serial,code,value,batch,expiry\n430000001,1966503271178511,5.00,43,2027-02-01\n",
		"four fields":    "serial,code,value,batch,expiry\n420000001,1966503271178511,5.00,42\n",
		"six fields":     "serial,code,value,batch,expiry\n420000001,1966503271178511,5.00,42,2027-02-01,x\n",
		"bad serial":     "serial,code,value,batch,expiry\n0,1966503271178511,5.00,42,2027-02-01\n",
		"bad expiry":     "serial,code,value,batch,expiry\n420000001,1966503271178511,5.00,42,01.02.2027\n",
		"blank line":     "serial,code,value,batch,expiry\n\n420000001,1966503271178511,5.00,42,2027-02-01\n",
		"problem json":   `{"type":"urn:ocs:problem:batch_exists","status":409}`,
	} {
		got, err := parseVoucherCSV([]byte(body), 42, five, nil)
		require.Error(t, err, name)
		require.Empty(t, got, name)
	}
}

func TestVoucherCardsSizing(t *testing.T) {
	c := Config{Scenario: ScenarioVoucher, Rate: 1000, Duration: 10 * time.Second, Concurrency: 16}
	require.Equal(t, 11_016, c.voucherCards(1), "rate × duration + 10% + one per worker")
	require.Equal(t, 1_116, c.voucherCards(0.1))
	c.Rate = 0
	require.Equal(t, 440_016, c.voucherCards(1), "closed loop assumes 40,000/s")
	c.Duration = time.Hour
	require.Equal(t, VoucherCardsMax, c.voucherCards(1), "bounded")
	c = Config{Scenario: ScenarioRamp, RampStart: 100, RampStep: 100, RampMax: 300, RampStepFor: time.Second, Concurrency: 4}
	require.Equal(t, 664, c.voucherCards(1), "(100+200+300)/s × 1 s + 10% + 4")
	c.VoucherCards = 7
	require.Equal(t, 7, c.voucherCards(1), "an explicit count wins")
}
