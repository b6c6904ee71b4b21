# The real Ruby Sidekiq (Debian's ruby-sidekiq 6.4.1) as the interop tests' peer: client,
# server, API and web app, each through Sidekiq's own classes.
#
#   REDIS_URL=redis://127.0.0.1:6379 ruby tests/ruby/peer.rb NAMESPACE COMMAND [ARGS...]
#
# Every command prints JSON (or nothing) on standard output. NAMESPACE "" means bare keys.
require "sidekiq"
require "sidekiq/api"
require "json"
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)

namespace, command, *args = ARGV
redis = { url: ENV.fetch("REDIS_URL", "redis://127.0.0.1:6379") }
redis[:namespace] = namespace unless namespace.to_s.empty?
Sidekiq.configure_client { |c| c.redis = redis }
Sidekiq.logger.level = Logger::WARN

module Interop
  # Fails every time (a workflow step that dies in Ruby).
  class Broken
    include Sidekiq::Worker
    def perform(*)
      raise "broken in Ruby"
    end
  end

  # Known to both sides: records who performed which job, with its arguments and when.
  class Recorder
    include Sidekiq::Worker
    def perform(*args)
      record = { who: "ruby", jid: jid, args: args, at: Time.now.to_f }
      Sidekiq.redis { |c| c.rpush("performed", JSON.generate(record)) }
    end
  end
end

# Every JSON type, as a Ruby app would pass them.
EVERY_TYPE = [1, "two", { "three" => 3.0, "n" => nil, "deep" => [[{}], []] }, [true, false],
              "emoji 😀 rtl עברית", 2**62, -1.5e-7, "", nil].freeze

def entries(set)
  set.map { |e| { jid: e.jid, score: e.score, key: "#{e.score}-#{e.jid}", item: e.item } }
end

def find(set, jid)
  set.find_job(jid) or abort "no job #{jid} in #{set.name}"
end

def process(identity)
  Sidekiq::ProcessSet.new.find { |p| p["identity"] == identity } or abort "no process #{identity}"
end

case command
when "push-every-way"
  Interop::Recorder.perform_async(*EVERY_TYPE)
  Interop::Recorder.perform_in(1, "in")
  Interop::Recorder.perform_at(Time.now.to_f + 1, "at")
  Sidekiq::Client.push_bulk("class" => Interop::Recorder, "args" => [["bulk", 1], ["bulk", 2]])
  Sidekiq::Client.push("class" => "Billing::InvoiceJob", "args" => [42, "eur"])
when "push"
  # push CLASS ARGS_JSON [QUEUE]: one job through Sidekiq::Client.push; prints its jid.
  item = { "class" => args[0], "args" => JSON.parse(args[1]) }
  item["queue"] = args[2] if args[2]
  puts JSON.generate(Sidekiq::Client.push(item))
when "push-range"
  # push-range FROM COUNT: Interop::Recorder jobs with arguments [FROM], [FROM + 1]...
  from = args[0].to_i
  Sidekiq::Client.push_bulk("class" => Interop::Recorder, "args" => Array.new(args[1].to_i) { |i| [from + i] })
when "server"
  # A Ruby Sidekiq server on "default" until SIGTERM; scheduled jobs polled about every second.
  require "sidekiq/launcher"
  Sidekiq.options[:concurrency] = (args[0] || 5).to_i
  # Each worker blocks one connection in BRPOP; the poller and heartbeat need their own.
  # (configure_server blocks only run under the sidekiq CLI, so set the pool directly.)
  Sidekiq.redis = redis.merge(size: Sidekiq.options[:concurrency] + 5)
  Sidekiq.options[:queues] = ["default"]
  Sidekiq.options[:poll_interval_average] = 1
  # Psychiq workflow steps run here count in their workflows.
  require_relative "../../ruby/psychiq_workflow"
  Sidekiq.server_middleware { |chain| chain.add Psychiq::WorkflowSteps }
  Sidekiq.death_handlers << Psychiq::WorkflowSteps.method(:died)
  launcher = Sidekiq::Launcher.new(Sidekiq.options)
  stop = Queue.new
  trap("TERM") { stop << true }
  launcher.run
  $stdout.puts "ready"
  $stdout.flush
  stop.pop
  launcher.stop
when "retries" then puts JSON.generate(entries(Sidekiq::RetrySet.new))
when "scheduled" then puts JSON.generate(entries(Sidekiq::ScheduledSet.new))
when "dead" then puts JSON.generate(entries(Sidekiq::DeadSet.new))
when "retry-now" then find(Sidekiq::RetrySet.new, args[0]).retry
when "dead-retry" then find(Sidekiq::DeadSet.new, args[0]).retry
when "retry-kill" then find(Sidekiq::RetrySet.new, args[0]).kill
when "reschedule" then find(Sidekiq::RetrySet.new, args[0]).reschedule(args[1].to_f)
when "stats"
  s = Sidekiq::Stats.new
  puts JSON.generate(processed: s.processed, failed: s.failed, enqueued: s.enqueued,
                     scheduled: s.scheduled_size, retries: s.retry_size, dead: s.dead_size,
                     processes: s.processes_size, workers: s.workers_size,
                     default_queue_latency: s.default_queue_latency, queues: s.queues)
when "processes"
  puts JSON.generate(Sidekiq::ProcessSet.new.map { |p|
    %w[identity hostname pid tag concurrency queues busy quiet rss beat].to_h { |k| [k, p[k]] }
  })
when "workers"
  puts JSON.generate(Sidekiq::Workers.new.map { |process, thread, work|
    { process: process, thread: thread, queue: work["queue"], run_at: work["run_at"],
      class: work["payload"]["class"], jid: work["payload"]["jid"] }
  })
when "quiet" then process(args[0]).quiet!
when "stop" then process(args[0]).stop!
when "web"
  # Renders every page of Sidekiq's own dashboard in process; prints {path: [status, body]}.
  require "sidekiq/web"
  require "rack/mock"
  app = Rack::Builder.new {
    use Rack::Session::Cookie, secret: "s" * 64
    run Sidekiq::Web
  }.to_app
  first = ->(set) { (e = set.first) ? "#{e.score}-#{e.jid}" : abort("#{set.name} is empty") }
  paths = ["/", "/busy", "/queues", "/queues/default", "/retries",
           "/retries/#{first.(Sidekiq::RetrySet.new)}", "/scheduled",
           "/scheduled/#{first.(Sidekiq::ScheduledSet.new)}", "/morgue",
           "/morgue/#{first.(Sidekiq::DeadSet.new)}", "/stats", "/stats/queues"]
  mock = Rack::MockRequest.new(app)
  puts JSON.generate(paths.to_h { |path|
    res = mock.get(path)
    [path, [res.status, res.body]]
  })
else
  abort "unknown command #{command.inspect}"
end
