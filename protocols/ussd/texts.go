package ussd

// Every text a subscriber reads, in Albanian as the operator writes it, in
// one table so that wording is reviewed in one place and the 182-character
// test walks all of them. Verbs with %s take, in order, the arguments named
// in the comment. Dates are dd.mm.yyyy, amounts "12.50 EUR".
const (
	// Prompts and menus (CON).
	txtPromptCode      = "Shkruani kodin 16-shifror të kartelës:"
	txtMenu101         = "Mirë se vini!\n1. Pagesat"
	txtPackagesHead    = "Zgjidhni pakon:"
	txtPromptSmartCard = "Shkruani numrin e SMART kartelës:"
	txtPromptUsername  = "Shkruani emrin e përdoruesit (username):"
	// package, account, price, fee
	txtConfirmPay       = "Pagesa e pakos %s për %s: %s EUR + %s EUR tarifë nga kredia juaj.\n1. Konfirmo\n2. Anulo"
	txtPromptRecipient  = "Shkruani numrin e telefonit të marrësit:"
	txtPromptAmount     = "Shkruani shumën për transfer (%s - %s EUR):"                      // min, max
	txtConfirmTransfer  = "Transferoni %s EUR te %s? Tarifa: %s EUR.\n1. Konfirmo\n2. Anulo" // amount, msisdn, fee
	txtConfirmOrCancel  = "1. Konfirmo\n2. Anulo"
	txtCancelled        = "Veprimi u anulua."
	txtInvalidChoice    = "Zgjedhje e pavlefshme."
	txtUnknownService   = "Shërbimi nuk njihet. Provoni *100#, *101#, *123*KODI# ose *150#."
	txtBadCodeFormat    = "Kodi i gabuar: kodi i kartelës ka 16 shifra."
	txtBadMSISDN        = "Numri i telefonit nuk është i saktë."
	txtBadAccount       = "Emri i përdoruesit ose numri i kartelës nuk është i saktë."
	txtBadAmount        = "Shuma nuk është e saktë. Shkruani p.sh. 5 ose 2.50."
	txtUnknownCaller    = "Numri juaj nuk njihet nga rrjeti."
	txtSessionMismatch  = "Sesioni nuk është i vlefshëm. Provoni përsëri."
	txtTransferToSelf   = "Nuk mund t'i transferoni kredi numrit tuaj."
	txtBelowMinimum     = "Shuma minimale është %s EUR."  // min
	txtAboveMaximum     = "Shuma maksimale është %s EUR." // max
	txtOverloaded       = "Shërbimi është i zënë. Provoni përsëri pas pak."
	txtUnavailable      = "Shërbimi nuk është i disponueshëm tani. Provoni përsëri më vonë."
	txtInquiry          = "Kredia juaj është %s EUR, e vlefshme deri më %s." // balance, date
	txtInquiryGrace     = "Kredia juaj është %s EUR. Validiteti ka skaduar më %s: mund të pranoni vetëm thirrje."
	txtInquirySuspended = "Kredia juaj është %s EUR. Numri është i pezulluar që nga %s: mbushni kredinë."

	// Successes (END): each ends with the transaction ID.
	txtRedeemedSelf  = "Mbushja u krye: +%s EUR. Kredia juaj është %s EUR, e vlefshme deri më %s. ID e transaksionit: %s"
	txtRedeemedOther = "Mbushja e numrit %s me %s EUR u krye. Validiteti i tij deri më %s. ID e transaksionit: %s"
	txtPaid          = "Pagesa u krye: %s, %s EUR. Paguar deri më %s. Kredia juaj është %s EUR. ID e transaksionit: %s"
	txtPaidCredit    = "Pagesa u krye: %s, %s EUR. Kredia juaj është %s EUR. ID e transaksionit: %s"
	txtTransferred   = "Transferuat %s EUR te %s. Kredia juaj është %s EUR, e vlefshme deri më %s. ID e transaksionit: %s"

	// Refusals (END), one per Reason.
	txtWrongCode        = "Kodi i gabuar. Kontrolloni kodin në kartelë dhe provoni përsëri."
	txtUsedCode         = "Kjo kartelë është përdorur më parë."
	txtBlockedCode      = "Kjo kartelë është e bllokuar. Kontaktoni shërbimin për klientë."
	txtExpiredCode      = "Kjo kartelë ka skaduar."
	txtBarred           = "Keni shtypur shumë kode të gabuara. Mbushja me kartelë është e bllokuar deri më %s." // date time
	txtUnknownRecipient = "Numri %s nuk është pajtimtar i rrjetit tonë."                                        // msisdn
	txtUnknownAccount   = "Llogaria %s nuk ekziston. Kontrolloni emrin e përdoruesit ose numrin e kartelës."    // account
	txtPackageMismatch  = "Pakoja %s nuk është pakoja e llogarisë %s."                                          // package, account
	txtInsufficient     = "Kredi e pamjaftueshme. Kredia juaj është %s EUR."                                    // balance
	txtAlreadyPaidMonth = "Shërbimin e pagesave e keni përdorur këtë muaj. Mund ta përdorni sërish muajin e ardhshëm."
	txtSuspended        = "Numri juaj është i pezulluar. Mbushni kredinë për ta riaktivizuar."
	txtGrace            = "Validiteti ka skaduar: mund të pranoni vetëm thirrje. Mbushni kredinë."
	txtBalanceLimit     = "Kredia do ta kalonte kufirin e lejuar."

	// An operation recorded but not finished (ErrInProgress), instead of
	// txtUnavailable: the engine finishes it within a minute, and a repeat
	// would be a second operation (a transfer) or a refusal (a used card).
	txtInProgress = "Kërkesa juaj po përpunohet: rezultatin do ta shihni brenda një minute. Mos e përsëritni; kontrolloni kredinë me *100#."
)
