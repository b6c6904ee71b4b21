# Rails ActiveJob (Debian's activejob 6.1) on the real Ruby Sidekiq, as the interop tests' peer:
# ActiveJob enqueues through the :sidekiq adapter, a Sidekiq server performs ActiveJob jobs, and
# Sidekiq's API shows them. One driver for all three Sidekiqs:
#
#   REDIS_URL=redis://127.0.0.1:6379 [PEER_NAMESPACE=ns] AJ_OUT=/tmp/out.jsonl ruby tests/ruby/active_job.rb COMMAND [ARGS...]
#   REDIS_URL=redis://127.0.0.1:6379/N AJ_OUT=... ../shared/peers/ruby-sidekiq 7|8 tests/ruby/active_job.rb COMMAND [ARGS...]
#
# PEER_NAMESPACE (redis-namespace) applies to 6.4.1 only; Sidekiq 7/8 use bare keys on their own db.
# Which adapter writes the jobs:
#   6.4.1: Rails 6.1's own ActiveJob::QueueAdapters::SidekiqAdapter (JobWrapper includes Sidekiq::Worker).
#   7.3:   Sidekiq's own lib/active_job/queue_adapters/sidekiq_adapter.rb, as its Rails engine loads it
#          (JobWrapper < Sidekiq::ActiveJob::Wrapper, which sidekiq/rails.rb defines).
#   8.0:   Sidekiq's own adapter and engine want activejob/railties >= 7.0 and define nothing under
#          Rails 6.1, so Rails 6.1's adapter is loaded by path (as on 6.4.1). This script then defines
#          Sidekiq::ActiveJob::Wrapper as 8.0's adapter does, so its server also runs jobs that
#          Sidekiq 8 + Rails 7+ would write.
# Commands print JSON lines (or nothing) on standard output:
#   info                                  {sidekiq, activejob, adapter, wrapper, wrapper_ancestors}
#   enqueue CLASS ARGS [--wait S] [--queue Q]   {jid, job_id}: ARGS is a JSON array (splatted) or
#                                         else Ruby source of an argument list: '42, :x, at: Time.now'
#   enqueue-rich [--wait S] [--queue Q]   AjEcho with every kind of ActiveJob argument; {jid, job_id}
#   serve SECS [QUEUES]                   a Sidekiq server on QUEUES (comma-separated, default
#                                         "default") for SECS seconds (or until SIGTERM); prints "ready"
#   retries | dead | scheduled | queue NAME   each entry's raw payload string, one a line
#   display retry|dead|scheduled|QUEUE    {jid, class, display_class, display_args} per entry
#   retry-all                             Sidekiq::RetrySet.new.retry_all ("Retry now" for all)
# Jobs performed append {who, job_class, provider_job_id, job_id, executions, args, kwargs,
# arg_types, kwarg_types} lines to the file AJ_OUT (symbols as strings, times as iso8601(9)).
require "sidekiq"
require "sidekiq/api"
require "active_job"
require "json"
require "bigdecimal"
Redis.silence_deprecations = true if defined?(Redis) && Redis.respond_to?(:silence_deprecations=)

MODERN = Sidekiq::VERSION.to_i >= 7
SIDEKIQ_LIB = File.dirname($LOADED_FEATURES.grep(%r{/sidekiq\.rb\z}).first)
if MODERN
  require "sidekiq/rails" # 7.3: Sidekiq::Rails engine + Sidekiq::ActiveJob::Wrapper; 8.0: no-op on railties 6.1
  own = File.join(SIDEKIQ_LIB, "active_job/queue_adapters/sidekiq_adapter.rb")
  require own if File.exist?(own) # 8.0: `gem "activejob", ">= 7.0"` fails and it defines nothing
end
ADAPTER = if defined?(Sidekiq::ActiveJob::Wrapper)
  "sidekiq #{Sidekiq::VERSION} lib/active_job/queue_adapters/sidekiq_adapter.rb"
else
  require File.join(Gem.loaded_specs["activejob"].full_gem_path, "lib/active_job/queue_adapters/sidekiq_adapter.rb")
  "activejob #{ActiveJob.version} lib/active_job/queue_adapters/sidekiq_adapter.rb"
end
unless defined?(Sidekiq::ActiveJob::Wrapper) || !MODERN
  module Sidekiq
    module ActiveJob
      class Wrapper # as Sidekiq 8.0.10's adapter defines it (for Rails >= 7)
        include Sidekiq::Job
        def perform(job_data) = ::ActiveJob::Base.execute(job_data.merge("provider_job_id" => jid))
      end
    end
  end
end

REDIS = { url: ENV.fetch("REDIS_URL", "redis://127.0.0.1:6379") }
REDIS[:namespace] = ENV["PEER_NAMESPACE"] unless MODERN || ENV["PEER_NAMESPACE"].to_s.empty?
Sidekiq.configure_client { |c| c.redis = REDIS }
Sidekiq.logger.level = Logger::WARN
ActiveJob::Base.queue_adapter = :sidekiq
ActiveJob::Base.logger = ActiveSupport::Logger.new($stderr, level: Logger::FATAL) # no failure logs
GlobalID.app = "app"
Time.zone_default = Time.find_zone!("UTC") # a Rails app's default config.time_zone

# A tiny GlobalID model: gid://app/User/ID.
class User
  include GlobalID::Identification
  attr_reader :id
  def initialize(id) = @id = id
  def self.find(id) = new(Integer(id))
end

# Writes what a job received to AJ_OUT, as plain JSON.
module Recording
  def self.plain(v)
    case v
    when ActiveSupport::Duration then v.iso8601
    when Hash then v.to_h { |k, x| [k.to_s, plain(x)] }
    when Array then v.map { |x| plain(x) }
    when Symbol, BigDecimal then v.to_s
    when Time, DateTime, ActiveSupport::TimeWithZone then v.iso8601(9)
    when Date then v.iso8601
    when Module then v.name
    when GlobalID::Identification then v.to_global_id.to_s
    else v
    end
  end

  def record(args, kwargs)
    line = { who: "ruby", job_class: self.class.name, provider_job_id: provider_job_id, job_id: job_id,
             executions: executions, args: Recording.plain(args), kwargs: Recording.plain(kwargs),
             arg_types: args.map { |a| a.class.to_s }, kwarg_types: kwargs.transform_values { |a| a.class.to_s } }
    File.open(ENV.fetch("AJ_OUT"), "a") do |f|
      f.flock(File::LOCK_EX)
      f.puts(JSON.generate(line))
    end
  end
end

class AjEcho < ActiveJob::Base
  include Recording
  def perform(*args, **kwargs) = record(args, kwargs)
end

module Billing
  class InvoiceJob < ActiveJob::Base
    include Recording
    def perform(*args, **kwargs) = record(args, kwargs)
  end
end

# Fails every time: Sidekiq's default retry (25) puts it in the retry set.
class AjFail < ActiveJob::Base
  class Declined < StandardError; end
  def perform(*) = raise(Declined, "declined")
end

# Fails with sidekiq_options retry: 0 (read through "wrapped"): straight to the dead set.
class AjDie < AjFail
  include(MODERN ? Sidekiq::Job::Options : Sidekiq::Worker::Options)
  sidekiq_options retry: 0
end

# Every kind of argument Rails 6.1 serializes. BigDecimal is left out: 6.1 passes it through raw
# (it is in PERMITTED_TYPES), which Sidekiq 7/8's strict JSON check refuses.
def rich_args
  t = Time.at(1_796_605_323, 123_456_789, :nsec).utc # 2026-12-07T01:02:03.123456789Z
  positional = [
    0, 2**62, -7, 1.5, "str", "", nil, true, false, :sym,
    { "a" => 1, "b" => [nil] }, { sym: 1, "str" => 2 },
    ActiveSupport::HashWithIndifferentAccess.new("x" => 1, "y" => :z),
    t, Date.new(2026, 12, 7), DateTime.new(2026, 12, 7, 1, 2, 3.5r, "+05:30"),
    t.in_time_zone("Asia/Tokyo"), 1.day + 2.hours, 90.seconds, AjEcho, Billing,
    User.new(1), [1, [2, [:three, { "four" => [Date.new(2026, 1, 1), { five: User.new(5) }] }]]]
  ]
  [positional, { kw: 1, at: t, sym: :v, nested: { deep: [:x] } }]
end

def options(args)
  opts = {}
  while (i = args.index { |a| a.start_with?("--") })
    flag, value = args.slice!(i, 2)
    case flag
    when "--wait" then opts[:wait] = Float(value)
    when "--queue" then opts[:queue] = value
    else abort "unknown option #{flag}"
    end
  end
  opts
end

def print_job(job)
  abort "enqueue failed" unless job
  puts JSON.generate(jid: job.provider_job_id, job_id: job.job_id)
end

def each_record(name, &block)
  case name
  when "retry" then Sidekiq::RetrySet.new.each(&block)
  when "dead" then Sidekiq::DeadSet.new.each(&block)
  when "scheduled" then Sidekiq::ScheduledSet.new.each(&block)
  else Sidekiq::Queue.new(name).each(&block)
  end
end

def serve(secs, queues)
  stop = Queue.new
  trap("TERM") { stop << true }
  Thread.new { sleep secs; stop << true }
  if MODERN
    instance = Sidekiq.configure_embed do |config|
      config.redis = REDIS
      config.queues = queues
      config.concurrency = 3
      config[:poll_interval_average] = 1 # fixed: no 10 s initial wait before the first poll
      config.logger.level = Logger::ERROR # job failures are WARN; they are in the retry set
    end
  else
    require "sidekiq/launcher"
    Sidekiq.logger.level = Logger::ERROR
    Sidekiq.options[:concurrency] = 3
    Sidekiq.redis = REDIS.merge(size: 8) # workers block in BRPOP; poller and heartbeat need more
    Sidekiq.options[:queues] = queues
    Sidekiq.options[:poll_interval_average] = 1
    instance = Sidekiq::Launcher.new(Sidekiq.options)
  end
  instance.run
  $stdout.puts "ready"
  $stdout.flush
  stop.pop
  instance.stop
end

command, *args = ARGV
case command
when "info"
  w = ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper
  puts JSON.generate(sidekiq: Sidekiq::VERSION, activejob: ActiveJob.version.to_s, adapter: ADAPTER,
                     wrapper: w.name, wrapper_ancestors: w.ancestors.take_while { |a| a != Object }.map(&:to_s))
when "enqueue"
  opts = options(args)
  target = opts.empty? ? args[0].constantize : args[0].constantize.set(opts)
  parsed = (JSON.parse(args[1]) rescue nil)
  print_job(parsed.is_a?(Array) ? target.perform_later(*parsed) : eval("target.perform_later(#{args[1]})"))
when "enqueue-rich"
  opts = options(args)
  positional, kwargs = rich_args
  print_job((opts.empty? ? AjEcho : AjEcho.set(opts)).perform_later(*positional, **kwargs))
when "serve" then serve(Float(args[0]), (args[1] || "default").split(","))
when "retries" then Sidekiq::RetrySet.new.each { |e| puts e.value }
when "dead" then Sidekiq::DeadSet.new.each { |e| puts e.value }
when "scheduled" then Sidekiq::ScheduledSet.new.each { |e| puts e.value }
when "queue" then Sidekiq::Queue.new(args[0]).each { |e| puts e.value }
when "display"
  each_record(args[0]) do |e|
    puts JSON.generate(jid: e.jid, class: e.klass, display_class: e.display_class, display_args: e.display_args)
  end
when "retry-all" then Sidekiq::RetrySet.new.retry_all
else
  abort "unknown command #{command.inspect}"
end
