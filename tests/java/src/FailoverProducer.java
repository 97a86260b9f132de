import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;
import java.util.concurrent.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * The CLIENT-PROFILES Java producer (acks at the client default = all, idempotence off,
 * batch.size=1024, linger.ms=5) sending paced records while the test kills brokers.
 * Usage: FailoverProducer <bootstrap> <topic> <count> <acked-file>. Sends "j00000".."j<count-1>"
 * to partition 0, about one per millisecond, prints "STARTED" after the first acknowledgement,
 * and writes every acknowledged value with its offset ("value offset" per line) to acked-file.
 * Exits non-zero if any send failed.
 */
public class FailoverProducer {
    public static void main(String[] a) throws Exception {
        String bootstrap = a[0], topic = a[1];
        int n = Integer.parseInt(a[2]);
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("enable.idempotence", "false");
        p.put("batch.size", "1024");
        p.put("linger.ms", "5");
        p.put("delivery.timeout.ms", "60000");
        p.put("key.serializer", ByteArraySerializer.class.getName());
        p.put("value.serializer", ByteArraySerializer.class.getName());
        List<String> acked = Collections.synchronizedList(new ArrayList<>());
        List<String> failed = Collections.synchronizedList(new ArrayList<>());
        CountDownLatch first = new CountDownLatch(1);
        try (KafkaProducer<byte[], byte[]> prod = new KafkaProducer<>(p)) {
            for (int i = 0; i < n; i++) {
                String v = String.format("j%05d", i);
                prod.send(new ProducerRecord<>(topic, 0, null, v.getBytes(StandardCharsets.UTF_8)), (md, e) -> {
                    if (e != null) failed.add(v + " " + e);
                    else { acked.add(v + " " + md.offset()); first.countDown(); }
                });
                if (i == 0) {
                    prod.flush();
                    first.await(60, TimeUnit.SECONDS);
                    System.out.println("STARTED");
                    System.out.flush();
                }
                Thread.sleep(0, 900_000);
                if (i % 10 == 0) Thread.sleep(1);
            }
            prod.flush();
        }
        Files.write(Paths.get(a[3]), acked, StandardCharsets.UTF_8);
        System.out.println("ACKED " + acked.size() + " FAILED " + failed.size());
        if (!failed.isEmpty()) {
            System.err.println("FAIL: " + failed.subList(0, Math.min(5, failed.size())));
            System.exit(1);
        }
    }
}
