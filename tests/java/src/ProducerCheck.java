import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.*;
import java.util.concurrent.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Java producer with the CLIENT-PROFILES "Java producer" settings (batch.size=1024, linger.ms=5,
 * enable.idempotence=false, acks left at the client default = all), values in Confluent wire format.
 * Usage: ProducerCheck <bootstrap> <topic> <count>. Sends <count> records (every 4th with an 8-byte key,
 * the rest with a null key), checks every send is acknowledged with a dense offset per partition.
 */
public class ProducerCheck {
    static void fail(String msg) { System.err.println("FAIL: " + msg); System.exit(1); }

    static byte[] value(int i) {
        byte[] body = String.format("{\"event\":%d,\"payload\":\"%s\"}", i, "x".repeat(100 + i % 100)).getBytes(StandardCharsets.UTF_8);
        return ByteBuffer.allocate(5 + body.length).put((byte) 0).putInt(42).put(body).array();
    }

    public static void main(String[] a) throws Exception {
        String bootstrap = a[0], topic = a[1];
        int n = Integer.parseInt(a[2]);
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("enable.idempotence", "false");
        p.put("batch.size", "1024");
        p.put("linger.ms", "5");
        p.put("key.serializer", ByteArraySerializer.class.getName());
        p.put("value.serializer", ByteArraySerializer.class.getName());
        p.put("delivery.timeout.ms", "60000");
        Map<Integer, List<Long>> offsets = new TreeMap<>();
        try (KafkaProducer<byte[], byte[]> prod = new KafkaProducer<>(p)) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                byte[] key = (i % 4 == 0) ? ByteBuffer.allocate(8).putLong(i).array() : null;
                fs.add(prod.send(new ProducerRecord<>(topic, key, value(i))));
            }
            prod.flush();
            for (Future<RecordMetadata> f : fs) {
                RecordMetadata md = f.get(60, TimeUnit.SECONDS);
                if (!md.hasOffset()) fail("no offset in " + md);
                offsets.computeIfAbsent(md.partition(), k -> new ArrayList<>()).add(md.offset());
            }
        }
        for (Map.Entry<Integer, List<Long>> e : offsets.entrySet()) {
            List<Long> l = e.getValue();
            Collections.sort(l);
            for (int i = 0; i < l.size(); i++)
                if (l.get(i) != i) fail("partition " + e.getKey() + " offsets not dense from 0: " + l.subList(0, Math.min(10, l.size())));
        }
        System.out.println("OK produced " + n + " records to partitions " + offsets.keySet());
    }
}
