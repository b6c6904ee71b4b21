# Ruby Sidekiq's figures for the same workload as `cargo run --release --example load`:
# enqueue N no-op jobs with push_bulk, drain them with an in-process launcher at
# concurrency C (like Sidekiq's own bin/sidekiqload), report jobs/s.
#
#   ruby bench/sidekiq_drain.rb [JOBS=100000] [CONCURRENCY=25]
# redis-namespace slows Sidekiq down several times, so compare on bare keys (bench/compare.sh).
require "sidekiq"
require "sidekiq/launcher"
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)

jobs = (ARGV[0] || 100_000).to_i
concurrency = (ARGV[1] || 25).to_i
# NAMESPACE="" gives Sidekiq's bare keys (use it only on a Redis of your own: bench/compare.sh).
namespace = ENV.fetch("NAMESPACE", "sidekiq-load-#{Process.pid}")
redis = { url: ENV.fetch("REDIS_URL", "redis://127.0.0.1:6379"), size: concurrency + 5 }
redis[:namespace] = namespace unless namespace.empty?
Sidekiq.configure_client { |c| c.redis = redis }
Sidekiq.configure_server { |c| c.redis = redis }
Sidekiq.logger.level = Logger::WARN

class Noop
  include Sidekiq::Worker
  def perform(*) = nil
end

singles = 10_000
started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
singles.times { Noop.set(queue: "load-single").perform_async }
single = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
Sidekiq.redis { |c| c.del("queue:load-single") }

started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
(jobs / 1000).times { Sidekiq::Client.push_bulk("class" => Noop, "args" => Array.new(1000) { [] }) }
enqueue = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started

# DRAIN=0: the enqueue figures only (bench/compare.sh drains with psychiq-load --ruby).
if ENV["DRAIN"] == "0"
  puts format("ruby sidekiq %s: enqueue %d jobs (push_bulk): %.2f s = %.0f jobs/s", Sidekiq::VERSION, jobs, enqueue, jobs / enqueue)
  puts format("ruby sidekiq %s: enqueue, single, 1 thread (perform_async): %.0f jobs/s", Sidekiq::VERSION, singles / single)
  Sidekiq.redis { |c| c.del("queue:default") }
  Sidekiq.redis { |c| c.keys("*").each { |k| c.del(k) } } unless namespace.empty?
  exit
end

Sidekiq.options[:concurrency] = concurrency
Sidekiq.options[:queues] = ["default"]
launcher = Sidekiq::Launcher.new(Sidekiq.options)
started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
launcher.run
# Sidekiq flushes counters with its heartbeat; the queue draining is the sign that every job
# was fetched, as bin/sidekiqload measures it.
sleep 0.05 until Sidekiq.redis { |c| c.llen("queue:default") }.zero?
drain = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
launcher.stop
Sidekiq.redis { |c| c.keys("*").each { |k| c.del(k) } } unless namespace.empty?
puts format("ruby sidekiq %s: enqueue %d jobs (push_bulk): %.2f s = %.0f jobs/s", Sidekiq::VERSION, jobs, enqueue, jobs / enqueue)
puts format("ruby sidekiq %s: enqueue, single, 1 thread (perform_async): %.0f jobs/s", Sidekiq::VERSION, singles / single)
puts format("ruby sidekiq %s: drain %d jobs at -c %d: %.2f s = %.0f jobs/s", Sidekiq::VERSION, jobs, concurrency, drain, jobs / drain)
