package httpapi

import (
	"errors"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/valyala/fasthttp"
)

// POST /v1/backups takes an online backup of the database; GET /v1/backups
// lists them. Both are for the ops role. The server names the directory
// (the UTC time of the backup, under the configured backup directory): a
// request carries no body, so that no client ever chooses where the server
// writes on its file system. A backup runs while the engine serves; one at
// a time. The Engine serves them when it implements Backups (engine.go).

var (
	// ErrBackupInProgress is what Backups.Take returns while another
	// backup runs: the endpoint answers 409.
	ErrBackupInProgress = errors.New("httpapi: a backup is already running")
	// ErrBackupDir is what Backups.Take and List return when the backup
	// directory cannot be created, read or written: 500, and the cause is
	// in the server log, not in the answer (it names host paths).
	ErrBackupDir = errors.New("httpapi: backup directory unusable")
)

var (
	probBackupInProgress = problem{status: 409, code: "backup_in_progress",
		detail: "A backup is already running: wait for it to finish (GET /v1/backups lists the finished ones)."}
	probBackupNotConfigured = problem{status: 503, code: "backup_not_configured",
		detail: "This engine was started without a backup directory (ocs serve --backup-dir)."}
	probBackupDir = problem{status: 500, code: "backup_dir_unusable",
		detail: "The backup directory cannot be created, read or written: the server log says why."}
	probBackupFailed = problem{status: 500, code: "backup_failed",
		detail: "The backup failed and was not kept; the engine goes on serving. The server log says why."}
	probBackupBody = badRequest("unexpected_body",
		"POST /v1/backups takes no body: the server names the backup and its directory.")
)

// opsBackupCreate serves POST /v1/backups: 201 with the new backup.
func (s *Server) opsBackupCreate(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	backups, ok := s.engine.(Backups)
	if !ok {
		writeProblem(ctx, st, probBackupNotConfigured, false)
		return slotError
	}
	if len(ctx.PostBody()) != 0 {
		return decodeFailed(ctx, st, probBackupBody, false)
	}
	b, err := backups.Take()
	if err != nil {
		return s.backupFailed(ctx, st, "backup", err)
	}
	st.buf = appendBackup(append(st.buf[:0], '{'), &b)
	st.buf = appendUintField(st.buf, "durationMs", uint64(max(b.Duration, 0)/time.Millisecond))
	st.buf = append(st.buf, '}')
	ctx.Response.Header.Set("Location", "/v1/backups")
	writeJSON(ctx, st, fasthttp.StatusCreated)
	return slotOf(charging.ResultOK)
}

// opsBackupList serves GET /v1/backups: {"backups":[…]}, newest first.
func (s *Server) opsBackupList(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	backups, ok := s.engine.(Backups)
	if !ok {
		writeProblem(ctx, st, probBackupNotConfigured, false)
		return slotError
	}
	list, err := backups.List()
	if err != nil {
		return s.backupFailed(ctx, st, "list backups", err)
	}
	b := append(st.buf[:0], `{"backups":[`...)
	for i := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(appendBackup(append(b, '{'), &list[i]), '}')
	}
	st.buf = append(b, "]}"...)
	writeJSON(ctx, st, fasthttp.StatusOK)
	return slotOf(charging.ResultOK)
}

// appendBackup writes a backup's fields after an opening brace.
func appendBackup(b []byte, bk *BackupInfo) []byte {
	b = appendStringField(b, "name", bk.Name)
	b = appendStringField(b, "path", bk.Path)
	b = append(appendKey(b, "createdAt"), '"')
	b = bk.CreatedAt.UTC().AppendFormat(b, time.RFC3339)
	b = append(b, '"')
	return appendUintField(b, "bytes", uint64(max(bk.Bytes, 0)))
}

// backupFailed answers a Backups error without its text: it may name host
// paths and system details, which belong in the log.
func (s *Server) backupFailed(ctx *fasthttp.RequestCtx, st *reqState, what string, err error) slot {
	p := probBackupFailed
	switch {
	case errors.Is(err, ErrBackupInProgress):
		writeProblem(ctx, st, probBackupInProgress, false)
		return slotError
	case errors.Is(err, ErrBackupDir):
		p = probBackupDir
	}
	s.log.Error(what+" failed", "err", err)
	writeProblem(ctx, st, p, false)
	return slotError
}
