# The workers psychiq-load's jobs name, for Ruby Sidekiq: `psychiq-load --ruby` starts
#   sidekiq -r ./bench/sidekiq_workers.rb -c C -q default
# with REDIS_URL set, on bare keys, and measures it as it measures psychiq. Sidekiq 7 and 8
# load it too (--ruby-cmd "../shared/peers/ruby-sidekiq 8 --server").
require "json"
require "sidekiq"
Redis.silence_deprecations = true if defined?(Redis) && Redis.respond_to?(:silence_deprecations=)
# LOG=default keeps Sidekiq's own level (info: a start and a done line per job).
Sidekiq.logger.level = Logger::WARN unless ENV["LOG"] == "default"

class Noop
  include Sidekiq::Worker
  def perform(*) = nil
end

# [milliseconds, path?]
class Sleep
  include Sidekiq::Worker
  def perform(ms, *) = sleep(ms / 1000.0)
end

# [path, ...]: appends [started_at, *args] as a JSON line, for the latency figures.
class Clock
  include Sidekiq::Worker
  def perform(path, *rest)
    line = JSON.generate([Time.now.to_f, path, *rest])
    File.open(path, "a") { |f| f.puts(line) }
  end
end

Customer = Struct.new(:id, :name, :email, keyword_init: true)
OrderLine = Struct.new(:sku, :quantity, :unit_cents, keyword_init: true)
Order = Struct.new(:id, :customer, :lines, :currency, :note, keyword_init: true) do
  def total_cents = lines.sum { |l| l.quantity * l.unit_cents }
end

# [order]: reads a 1 KB order object into structs and adds it up (psychiq's demo Ingest).
class Ingest
  include Sidekiq::Worker
  def perform(order)
    order = Order.new(
      id: order.fetch("id"),
      customer: Customer.new(**order.fetch("customer").transform_keys(&:to_sym)),
      lines: order.fetch("lines").map { |l| OrderLine.new(**l.transform_keys(&:to_sym)) },
      currency: order.fetch("currency"),
      note: order.fetch("note")
    )
    raise ArgumentError, "an order with nothing in it" if order.total_cents.zero?
  end
end
