;;;; The original Common Lisp Psychiq 0.2.0 as the interop tests' peer (client, server, admin).
;;;;
;;;;   PSYCHIQ_LISP_QUIET=1 PEER_REDIS_PORT=6379 PEER_REDIS_DB=N \
;;;;   sbcl --noinform --non-interactive --load /work/shared/peers/lisp/load.lisp \
;;;;        --load tests/lisp/peer.lisp --end-toplevel-options COMMAND ARGS...
;;;;
;;;; (--noinform: else SBCL prints its banner on stdout; --end-toplevel-options: else an
;;;; argument starting with "--" is taken as an SBCL option.)  Env: PEER_REDIS_HOST (127.0.0.1),
;;;; PEER_REDIS_PORT (6379), PEER_REDIS_DB (0), PEER_NAMESPACE (unset = NIL = bare keys),
;;;; PEER_SAME_JIDS=1 keeps SBCL's fixed start-up *random-state* (every fresh process then makes
;;;; the same jids; by default we seed it so separate runs get distinct jids).
;;;; Logs (vom) go to stderr; stdout carries only the results below.
;;;;
;;;;   enqueue CLASS ARGS_JSON [QUEUE]                -> the jid (plain line)
;;;;   enqueue-bulk CLASS ARGS_LIST_JSON [QUEUE]      -> one jid per line, in order
;;;;   enqueue-in-sec SECONDS CLASS ARGS_JSON [QUEUE] -> the jid
;;;;   serve SECONDS OUT_FILE [QUEUE,QUEUE...]        -> nothing; exits 0 after stop + wait-for
;;;;   retries          -> one JSON payload per line (psy:all-retries, re-encoded by jonathan)
;;;;   retry-length | queue-length QUEUE -> an integer
;;;;   stats            -> {"processed":..,"failed":..,"scheduled":..,"retry":..,"dead":..,
;;;;                        "processes":..,"default-queue-latency":..,"workers":..,"enqueued":..}
;;;;   all-queues       -> a JSON array of queue names
;;;;
;;;; CLASS is any string: the payload's "class" is exactly it.  psy:enqueue takes a class *symbol*
;;;; (find-class must succeed; the queue is worker-queue-name of an allocate-instance) and writes
;;;; "PACKAGE::SYMBOL-NAME", so we enqueue the proxy class PEER-JOB and make
;;;; psychiq.util:symbol-name-with-package answer CLASS for that one symbol.
;;;;
;;;; FACTS (found against a private redis-server, see the report):
;;;;  * enqueue (MULTI; SADD queues Q; RPUSH queue:Q; EXEC), captured with redis-cli MONITOR:
;;;;      {"class":"COMMON-LISP-USER::LISP-ECHO","args":[1,"x",{"b":false,"a":null},[],2.5],
;;;;       "jid":"7ymhcpvx6c6c","created_at":1796615988,"enqueued_at":1796615988}
;;;;    enqueue-bulk: MULTI, one RPUSH per job (same keys, one shared enqueued_at), SADD, EXEC.
;;;;    enqueue-in-sec N: ZADD schedule <now+N, integer> with
;;;;      {"class":..,"args":..,"jid":..,"created_at":<int>,"queue":"Q"}   (no enqueued_at).
;;;;    No "retry" key ever; times are integer seconds; jid = (format nil "~(~36,6,'0R~)" (random
;;;;    36^12)), so 6..12 base-36 chars (11-char jids do occur).  Object keys inside args come
;;;;    out reversed ({"a":null,"b":false} -> {"b":false,"a":null}): jonathan's alists.
;;;;  * The server BLPOPs, then decode-job does (make-instance (read-from-string class)) with
;;;;    *package* = CL-USER: "Echo" -> CL-USER::ECHO (runs), "COMMON-LISP-USER::LISP-ECHO" runs,
;;;;    "Greet" -> CLASS-NOT-FOUND-ERROR, "Interop::Recorder" -> reader PACKAGE-ERROR (no package).
;;;;    An unresolvable class happens before the retry middleware: the job is LOST (not retried,
;;;;    not dead), stat failed+1 and processed+1, a WARN on stderr, the processor thread dies and
;;;;    the manager starts a new one; the server keeps running.
;;;;  * A failure (retry middleware) ZADDs retry <now + retry_count^4 + 15 + random(30)*(count+1)>,
;;;;    integer seconds: the popped payload re-encoded, its keys in reverse order, then appended:
;;;;    first failure: "error_message" (princ of the condition), "error_class" (e.g.
;;;;    "COMMON-LISP::SIMPLE-ERROR"), "queue", "failed_at" (int s), "retry_count":0;
;;;;    later failures: retry_count+1 and "retried_at" (int s), failed_at kept.  No
;;;;    error_backtrace (worker-use-backtrace-p is NIL).  The payload's "retry" is ignored
;;;;    (by the code, retry:false jobs are retried too); past worker-max-retries (25): ZADD dead.
;;;;  * Poller (every 1-3 s, for "retry" then "schedule"): ZRANGEBYSCORE key -inf <now int s>
;;;;    LIMIT 0 1, ZREM, then RPUSH to queue:<"queue" or "default"> with "enqueued_at" overwritten
;;;;    by the integer now.  It reads only the score (seconds) and "queue", never retry_count/at.
;;;;  * Sidekiq 8 millisecond created_at/enqueued_at/retried_at (and float seconds such as
;;;;    1796599381.123456) pass through a run and a retry unchanged and break nothing, except
;;;;    stats' default-queue-latency (now - enqueued_at of the last job in queue:default), which
;;;;    goes hugely negative (-1794802765462).
;;;;  * The heartbeat leaves HOST:PID (EXPIRE 60) and HOST:PID:workers (no TTL) after a stop.

(in-package :cl-user)

(setf vom:*log-stream* (make-synonym-stream '*error-output*))
(unless (equal (uiop:getenv "PEER_SAME_JIDS") "1")
  (setf *random-state* (make-random-state t)))

(defun env (name &optional default)
  (let ((v (uiop:getenv name))) (if (and v (plusp (length v))) v default)))
(setf psy:*psychiq-namespace* (env "PEER_NAMESPACE"))
(defparameter *host* (env "PEER_REDIS_HOST" "127.0.0.1"))
(defparameter *port* (parse-integer (env "PEER_REDIS_PORT" "6379")))
(defparameter *db* (parse-integer (env "PEER_REDIS_DB" "0")))

(defun connect () (psy:connect-toplevel :host *host* :port *port* :db *db*))
(defun say (x) (format t "~A~%" x) (finish-output))
(defun json (x) (psychiq.coder:encode-object x))  ; jonathan, :from :alist, as psychiq writes
(defun unjson (s) (psychiq.coder:decode-object s)) ; :as :alist, null -> :NULL, false -> :FALSE

;;; Workers.  Payload class of LISP-ECHO: "COMMON-LISP-USER::LISP-ECHO"; of ECHO:
;;; "COMMON-LISP-USER::ECHO", but the server also runs class "Echo" (it READ-FROM-STRINGs the
;;; class in CL-USER, and the reader upcases).  LISP-FAIL ("COMMON-LISP-USER::LISP-FAIL") always
;;; signals a SIMPLE-ERROR, so its jobs go to the retry set.
(defvar *queue* "default")
(defclass peer-worker (psy:worker) ((job :initform nil :accessor worker-job)))
(defmethod psy:worker-queue-name ((w peer-worker)) *queue*)
(defclass peer-job (peer-worker) ())
(defclass lisp-echo (peer-worker) ())
(defclass echo (lisp-echo) ())
(defclass lisp-fail (peer-worker) ())

(defvar *class-string* nil)
(let ((orig #'psychiq.util:symbol-name-with-package))
  (setf (fdefinition 'psychiq.util:symbol-name-with-package)
        (lambda (symbol) (if (eq symbol 'peer-job) *class-string* (funcall orig symbol)))))

;; perform gets no jid: keep the payload on the worker instance decode-job makes.
(let ((orig #'psychiq.worker:decode-job))
  (setf (fdefinition 'psychiq.worker:decode-job)
        (lambda (job-info)
          (let ((worker (funcall orig job-info)))
            (when (typep worker 'peer-worker) (setf (worker-job worker) job-info))
            worker))))

(defvar *out-file* nil)
(defvar *out-lock* (bt2:make-lock :name "peer out-file"))
(defmethod psy:perform ((w lisp-echo) &rest args)
  (let* ((job (worker-job w))
         (line (json `(("who" . "lisp") ("jid" . ,(psychiq.util:aget job "jid"))
                       ("class" . ,(psychiq.util:aget job "class")) ("args" . ,(or args #()))))))
    (bt2:with-lock-held (*out-lock*)
      (with-open-file (s *out-file* :direction :output :if-exists :append
                                    :if-does-not-exist :create :external-format :utf-8)
        (write-line line s)
        (finish-output s)))))
(defmethod psy:perform ((w lisp-fail) &rest args)
  (error "lisp-fail always fails (args ~S)" args))

;; 0.2.0 adds its processed/failed counts to stat:* only on its 5 s heartbeat, and loses the
;; counts of the last (< 5 s) interval at stop.  Not so here: write them after wait-for.
(defun flush-stats (launcher)
  (let ((manager (psychiq.launcher::launcher-manager launcher))
        (today (local-time:format-timestring nil (local-time:today)
                                             :format '((:year 4) #\- (:month 2) #\- (:day 2)))))
    (connect)
    (loop for (name var) in `(("processed" ,(psychiq.launcher.manager:manager-stat-processed manager))
                              ("failed" ,(psychiq.launcher.manager:manager-stat-failed manager)))
          for n = (psychiq.util:reset-value var)
          do (red:incrby (psychiq.util:redis-key "stat" name) n)
             (red:incrby (psychiq.util:redis-key "stat" name today) n))))

;;; Commands.
(defmacro with-class ((class queue) &body body)
  `(let ((*class-string* ,class) (*queue* (or ,queue "default"))) ,@body))

(defun main (command &rest args)
  (flet ((argn (n) (nth n args)))
    (cond
      ((string= command "enqueue")
       (connect)
       (with-class ((argn 0) (argn 2))
         (say (psychiq.util:aget (psy:enqueue 'peer-job (unjson (argn 1))) "jid"))))
      ((string= command "enqueue-bulk")
       (connect)
       (with-class ((argn 0) (argn 2))
         (let ((lists (unjson (argn 1))))
           (when lists
             (dolist (job (apply #'psy:enqueue-bulk 'peer-job lists))
               (say (psychiq.util:aget job "jid")))))))
      ((string= command "enqueue-in-sec")
       (connect)
       (with-class ((argn 1) (argn 3))
         (say (psychiq.util:aget (psy:enqueue-in-sec (parse-integer (argn 0)) 'peer-job
                                                     (unjson (argn 2)))
                                 "jid"))))
      ((string= command "serve")
       (setf *out-file* (argn 1))
       ;; = psychiq.launcher:run with :concurrency 2, plus :interval 1 (BLPOP timeout 1 s
       ;; instead of 5, so stop + wait-for returns within ~1-3 s).
       (let ((launcher (psychiq.launcher:start
                        (psychiq.launcher::make-launcher
                         :host *host* :port *port* :db *db* :concurrency 2 :interval 1
                         :queue (uiop:split-string (or (argn 2) "default") :separator ",")))))
         (sleep (parse-integer (argn 0)))
         (psychiq.launcher:stop launcher)
         (psychiq.launcher:wait-for launcher)
         (flush-stats launcher)))
      ((string= command "retries")
       (connect)
       (dolist (job (psy:all-retries)) (say (json job))))
      ((string= command "retry-length") (connect) (say (psy:retry-length)))
      ((string= command "queue-length") (connect) (say (psy:queue-length (argn 0))))
      ((string= command "all-queues") (connect) (say (json (coerce (psy:all-queues) 'vector))))
      ((string= command "stats")
       (connect)
       (say (json (loop for (k v) on (psy:stats) by #'cddr
                        collect (cons (string-downcase k) v)))))
      (t (error "unknown command ~S" command)))))

(apply #'main (rest sb-ext:*posix-argv*))
(finish-output)
;; Exit now, without waiting for psychiq's sleeping heartbeat/scheduled threads.
(sb-ext:exit :code 0 :abort t)
