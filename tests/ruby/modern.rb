# Sidekiq 7.3.10 and 8.0.10 (from ../shared/peers, run through its `ruby-sidekiq 7|8`) as the
# interop tests' peer: client, embedded server, API and web app. They have no namespaces, so
# each test gives them a Redis database of their own.
#
#   REDIS_URL=redis://127.0.0.1:6379/N ruby-sidekiq 7|8 tests/ruby/modern.rb COMMAND [ARGS...]
#
# Every command prints JSON (or nothing) on standard output.
require "sidekiq"
require "sidekiq/api"
require "json"

command, *args = ARGV
REDIS = { url: ENV.fetch("REDIS_URL") }.freeze
Sidekiq.configure_client do |config|
  config.redis = REDIS
  config.logger.level = Logger::WARN
end

module Interop
  # Known to both sides: records who performed which job, with its arguments.
  class Recorder
    include Sidekiq::Job
    def perform(*args)
      record = { who: "ruby", jid: jid, args: args, at: Time.now.to_f }
      Sidekiq.redis { |c| c.call("RPUSH", "performed", JSON.generate(record)) }
    end
  end

  # Fails every time, so its retry payload is what this Sidekiq writes.
  class Flaky
    include Sidekiq::Job
    sidekiq_options retry: 3, backtrace: true
    class PaymentDeclined < StandardError; end
    def perform(*) = raise(PaymentDeclined, "declined")
  end
end

EVERY_TYPE = [1, "two", { "three" => 3.0, "n" => nil, "deep" => [[{}], []] }, [true, false],
              "emoji 😀 rtl עברית", 2**62, -1.5e-7, "", nil].freeze

def entries(set)
  set.map { |e| { jid: e.jid, score: e.score, item: e.item } }
end

case command
when "every-type" then puts JSON.generate(EVERY_TYPE)
when "push-every-way"
  Interop::Recorder.perform_async(*EVERY_TYPE)
  Interop::Recorder.perform_in(1, "in")
  Sidekiq::Client.push_bulk("class" => Interop::Recorder, "args" => [["bulk", 1], ["bulk", 2]])
when "push"
  # push CLASS ARGS_JSON QUEUE: one job; prints the payload as this Sidekiq wrote it.
  jid = Sidekiq::Client.push("class" => args[0], "args" => JSON.parse(args[1]), "queue" => args[2])
  raw = Sidekiq.redis { |c| c.call("LRANGE", "queue:#{args[2]}", 0, -1) }.find { |r| r.include?(jid) }
  puts raw
when "server"
  # An embedded server on "default" until SIGTERM (Sidekiq 7+'s configure_embed).
  instance = Sidekiq.configure_embed do |config|
    config.redis = REDIS
    config.queues = ["default"]
    config.concurrency = (args[0] || 2).to_i
    config.average_scheduled_poll_interval = 1
    config.logger.level = Logger::WARN
    # Psychiq workflow steps run here count in their workflows.
    require_relative "../../ruby/psychiq_workflow"
    config.server_middleware { |chain| chain.add Psychiq::WorkflowSteps }
    config.death_handlers << Psychiq::WorkflowSteps.method(:died)
  end
  stop = Queue.new
  trap("TERM") { stop << true }
  instance.run
  $stdout.puts "ready"
  $stdout.flush
  stop.pop
  instance.stop
when "retries" then puts JSON.generate(entries(Sidekiq::RetrySet.new))
when "dead" then puts JSON.generate(entries(Sidekiq::DeadSet.new))
when "retry-now"
  (Sidekiq::RetrySet.new.find_job(args[0]) or abort "no job #{args[0]} in retry").retry
when "stats"
  s = Sidekiq::Stats.new
  puts JSON.generate(processed: s.processed, failed: s.failed, retries: s.retry_size,
                     dead: s.dead_size, processes: s.processes_size, workers: s.workers_size)
when "processes"
  puts JSON.generate(Sidekiq::ProcessSet.new.map { |p|
    %w[identity tag concurrency queues busy quiet].to_h { |k| [k, p[k]] }
  })
when "workers"
  puts JSON.generate(Sidekiq::WorkSet.new.map { |process, thread, work|
    # work.payload is the job's JSON text, as Sidekiq's own processor writes it.
    { process: process, queue: work.queue, class: work.job.klass, jid: work.job.jid }
  })
when "web"
  # Renders pages of Sidekiq's own dashboard in process; prints {path: [status, body]}.
  require "sidekiq/web"
  require "rack/mock"
  require "rack"
  session = defined?(Rack::Session::Cookie) ? Rack::Session::Cookie : nil
  app = Rack::Builder.new {
    use session, secret: "s" * 64 if session
    run Sidekiq::Web
  }.to_app
  mock = Rack::MockRequest.new(app)
  puts JSON.generate(args.to_h { |path|
    res = mock.get(path)
    [path, [res.status, res.body]]
  })
else
  abort "unknown command #{command.inspect}"
end
