-- A workflow step's end, exactly once: ARGV[1] the namespace prefix, ARGV[2] the workflow
-- id, ARGV[3] the step, ARGV[4] 'succeeded' or 'dead', ARGV[5] its result (JSON) for a
-- success, its error (text, may be empty) for a death, ARGV[6] now (epoch seconds),
-- ARGV[7] the jid that ended.
-- A run of a jid the step no longer has (one from before the workflow was retried, say)
-- changes nothing. See finish_step in workflow_common.lua for the rest; returns what it does.
-- Used by extensions/workflow/steps.rs (success), server/departure.rs (death) and
-- ruby/psychiq_workflow.rb (both, from a Ruby Sidekiq server).
local wid, step, outcome, result, now, jid = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local current = redis.call('hget', wkey(wid, 'jids'), step)
if not current then return -1 end
if current ~= jid then return 0 end
return finish_step(wid, step, outcome, result, now)
