# Lets a Ruby Sidekiq server (6.4, 7, 8) run the steps of Psychiq workflows: a step's
# success and its death are counted in its workflow as a Psychiq server counts them, by the
# same Lua (read from this checkout's src/store/scripts), so the steps after it start.
#
#   require_relative "path/to/psychiq/ruby/psychiq_workflow"
#   Sidekiq.configure_server do |config|
#     config.server_middleware { |chain| chain.add Psychiq::WorkflowSteps }
#     config.death_handlers << Psychiq::WorkflowSteps.method(:died)
#   end
#
# What does not cross: a Ruby step's result is null (its return value is not taken), it
# cannot read its parents' results or add steps, a batch step's jobs run on Psychiq, and a
# job a worker discards (sidekiq_retries_exhausted returning :discard) ends no step.
require "sidekiq"

module Psychiq
  class WorkflowSteps
    SCRIPTS = File.expand_path("../src/store/scripts", __dir__)
    SCRIPT = %w[workflow_common.lua workflow_step.lua]
      .map { |name| File.read(File.join(SCRIPTS, name)) }.join

    def call(_worker, job, _queue)
      result = yield
      WorkflowSteps.finish(job, "succeeded", "null") if job["wf"]
      result
    rescue Exception => e
      # `retry: false` drops a failed job without calling the death handlers; a job stopped
      # by a shutdown is pushed back, not failed.
      if job["wf"] && job["retry"] == false && !WorkflowSteps.interrupted?(e)
        WorkflowSteps.finish(job, "dead", "#{e.class}: #{e.message}")
      end
      raise
    end

    def self.interrupted?(error)
      stops = [Sidekiq::Shutdown, Interrupt]
      stops << Sidekiq::Job::Interrupted if defined?(Sidekiq::Job::Interrupted)
      stops.any? { |stop| error.is_a?(stop) }
    end

    # A death handler: the job's retries are spent (or it had none) and it died.
    def self.died(job, error)
      finish(job, "dead", "#{error.class}: #{error.message}") if job["wf"]
    end

    def self.finish(job, outcome, result)
      Sidekiq.redis do |conn|
        # redis-namespace prefixes KEYS only; the scripts build their keys from this.
        prefix = conn.respond_to?(:namespace) && conn.namespace ? "#{conn.namespace}:" : ""
        args = [prefix, job["wf"], job["wf_step"], outcome, result, format("%.6f", Time.now.to_f), job["jid"]]
        if conn.respond_to?(:eval)
          conn.eval(SCRIPT, [], args)
        else
          conn.call("EVAL", SCRIPT, 0, *args)
        end
      end
    end
  end
end
