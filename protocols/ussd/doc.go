// Package ussd serves the USSD channel through the widespread HTTP gateway
// convention: the gateway POSTs form fields sessionId, serviceCode,
// phoneNumber, networkCode and text (every input so far joined by '*') to
// /ussd, and shows the text/plain reply: "CON …" continues the dialogue,
// "END …" closes it. Every reply body is at most 182 characters.
//
// Flows (codes in menu.go):
//
//	*123*CODE#           scratch card for oneself (or *123# then the code)
//	*123*CODE*MSISDN#    scratch card for another subscriber
//	*100#                balance and validity
//	*101#                1 Pagesat → package → SMART card / username →
//	                     1 Konfirmo: price + 0.50 EUR from mobile credit,
//	                     once per calendar month
//	*150*MSISDN*AMOUNT#  credit transfer, then 1 Konfirmo (or *150# step
//	                     by step)
//
// The gateway may send the dialled string whole in serviceCode
// ("*123*CODE#") or split ("*123#" plus text "CODE"): Menu.Parse joins both.
//
// Menu is a pure translator: the position in a menu is entirely in the
// request, so it keeps no state. The Handler keeps a bounded, expiring
// session table only to bind a session to its caller and to answer a
// gateway's retry of a finished request without running it again. After
// eviction (or a restart) a retry runs again and moves no money twice: a
// transfer's request key finds the transfer; a used card, or a month
// already paid, refuses it, and the flows answer a retry of a recent
// success with that success (flows.RetryAnswerMax).
package ussd
